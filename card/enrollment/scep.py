"""SCEP issuer (RFC 8894): GetCACaps, GetCACert with fingerprint pinning, PKIOperation over
POST, CertRep verification and decryption with the card key.

How renewal maps onto SCEP here (see ``reference/enrollment-protocols.md`` §3–4): the old key
exists only until GENERATE, and a SCEP reply is encrypted to the key that signed the request.
So ``authorize_renewal`` (old key present) pins the CA, fixes the transaction and, with an RA hook
(``challenge_command``), obtains a one-time challenge against a proof of possession of the old
key. ``issue`` (new key in the slot) sends the CSR with the challenge password (§2.2), either as a
PKCSReq signed by the new key under a short-lived self-signed transport certificate, or as a
RenewalReq signed by the card's other slot's certificate (``message_type = "RenewalReq"``), and
decrypts the CertRep on the card (§3.2, §3.3). The challenge is never logged.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import signal
import selectors
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asn1crypto import algos, cms, core, parser
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from card.certificates import fingerprint, key_matches, public_key_der
from card.config_errors import ConfigError
from card.enrollment import http
from card.enrollment.base import (
    CardKey,
    IssuancePending,
    IssuedCertificate,
    IssuerRejected,
    IssuerReplyInvalid,
    IssuerUnavailable,
    RaRejected,
    RaUnavailable,
    RenewalGrant,
    RequestSigner,
    RetryRefused,
    Signer,
)
from card.enrollment.scep_settings import ScepIssuerSettings
from card.errors import OperationCancelled
from card.secret import Secret

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover
    TripleDES = algorithms.TripleDES  # type: ignore[misc,assignment]

logger = logging.getLogger(__name__)

OID_MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
OID_PKI_STATUS = "2.16.840.1.113733.1.9.3"
OID_FAIL_INFO = "2.16.840.1.113733.1.9.4"
OID_SENDER_NONCE = "2.16.840.1.113733.1.9.5"
OID_RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
OID_TRANSACTION_ID = "2.16.840.1.113733.1.9.7"

MESSAGE_CERT_REP = "3"
MESSAGE_PKCS_REQ = "19"
MESSAGE_RENEWAL_REQ = "17"
MESSAGE_CERT_POLL = "20"
STATUS_SUCCESS, STATUS_FAILURE, STATUS_PENDING = "0", "2", "3"

HOOK_STDOUT_CAP = 64 * 1024
"""Bytes of RA hook stdout accepted; more is a refusal (RA-REFUSED), the hook is ended."""
HOOK_STDERR_KEEP = 4 * 1024
"""Bytes of RA hook stderr kept (the last ones: the reason is the last line); the rest is discarded."""
HOOK_EXIT_GRACE_S = 0.5
"""Seconds the pipes are still read after the hook itself exited (a leftover child may hold them)."""
HOOK_POLL_S = 0.05
"""Seconds between checks of the hook's exit, the deadline and cancellation."""

FAIL_INFO = {
    "0": "badAlg: the CA does not accept the algorithm used",
    "1": "badMessageCheck: the CA could not verify the request's signature",
    "2": "badRequest: the CA refused the request (for example a wrong challenge password, or a "
         "certificate for this name already exists)",
    "3": "badTime: the request's time is outside the CA's window (check this computer's clock)",
    "4": "badCertId: the CA does not know the certificate referred to",
}


def _attr(oid: str, value: core.Asn1Value) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": oid, "values": [value]})


def _attr_values(attrs: cms.CMSAttributes) -> dict[str, bytes]:
    """Signed attributes by dotted OID → the raw contents of the first value."""
    out: dict[str, bytes] = {}
    for attr in attrs:
        if len(attr["values"]) == 0:
            continue
        value = attr["values"][0]
        contents = value.contents if not isinstance(value, core.Any) else value.parsed.contents
        out[attr["type"].dotted] = contents if isinstance(contents, bytes) else b""
    return out


def _encrypted_content(eci: cms.EncryptedContentInfo) -> bytes:
    """The ``[0]`` encryptedContent, primitive or constructed (a BER chain of OCTET STRINGs, as Go
    writes it; asn1crypto accepts only the primitive form)."""
    data, pos, out = eci.contents, 0, b""
    while pos < len(data):
        cls, method, tag, header, contents, trailer = parser.parse(data[pos:])
        pos += len(header) + len(contents) + len(trailer)
        if cls == 2 and tag == 0:  # context-specific [0]
            if method == 0:
                return contents
            inner = 0
            while inner < len(contents):
                _, _, _, h, c, t = parser.parse(contents[inner:])
                out += c
                inner += len(h) + len(c) + len(t)
            return out
    raise ValueError("the SCEP reply carries no encrypted content")


def _pkcs1_type2_unpad(block: bytes) -> bytes:
    """Remove EME-PKCS1-v1_5 padding (RFC 8017 §7.2.2) from a decrypted 256-byte block."""
    if len(block) < 11 or block[0] != 0 or block[1] != 2:
        raise IssuerRejected("the CA's reply could not be decrypted with the card key")
    sep = block.find(b"\x00", 2)
    if sep < 10:
        raise IssuerRejected("the CA's reply could not be decrypted with the card key")
    return block[sep + 1 :]


def _fail_text(fail_info: bytes) -> str:
    """A CertRep's failInfo (RFC 8894 §3.2.1.4.5) in words."""
    code = fail_info.decode("ascii", "replace")
    return FAIL_INFO.get(code, f"failInfo {code}")


PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, UnicodeError,
                RecursionError, UnsupportedAlgorithm, x509.InvalidVersion)
"""What asn1crypto and cryptography raise on malformed DER (asn1crypto parses lazily, so a field's
first access can raise any of these): turned into IssuerReplyInvalid at the parsers below."""


def parse_ca_caps(body: bytes) -> set[str]:
    """A GetCACaps reply (RFC 8894 §3.5.2): one capability per line, upper-cased; anything else in
    the body (binary junk, an HTML page) is simply not a capability. Never raises."""
    text = body.decode("ascii", "replace")
    return {token for line in text.splitlines()
            if (token := line.strip().upper()) and len(token) <= 64 and token.isascii() and token.isprintable()}


def parse_ca_certificates(body: bytes, content_type: str) -> list[x509.Certificate]:
    """A GetCACert reply (RFC 8894 §4.2.1): one DER certificate (``application/x-x509-ca-cert``),
    or a degenerate certs-only PKCS#7 SignedData (``application/x-x509-ca-ra-cert``, §4.2.1.2).

    Returns:
        The certificates in the order sent (at least one); the first one's public key parses.

    Raises:
        IssuerReplyInvalid: anything else.
    """
    try:
        if "x-x509-ca-ra-cert" in content_type.lower():
            info = cms.ContentInfo.load(body)
            if info["content_type"].native != "signed_data":
                raise ValueError("not a PKCS#7 SignedData")
            choices = info["content"]["certificates"]
            certs = [x509.load_der_x509_certificate(c.chosen.dump()) for c in choices] if choices.native else []
        else:
            certs = [x509.load_der_x509_certificate(body)]
        if not certs:
            raise ValueError("no certificate")
        certs[0].public_key()
    except PARSE_ERRORS as exc:
        raise IssuerReplyInvalid("the SCEP server's CA certificate (GetCACert) does not parse; nothing was changed") from exc
    return certs


@dataclass(frozen=True)
class CertRep:
    """The parts of a CertRep (RFC 8894 §3.3.2) that the client checks, as parsed from the reply.

    ``signed_attributes`` are the DER bytes the signature covers (the SET OF, RFC 5652 §5.4);
    ``attributes`` map dotted OIDs to the contents octets of their first value.
    """

    digest_algorithm: str
    signature: bytes
    signed_attributes: bytes
    attributes: dict[str, bytes]
    message_digest: bytes | None
    content: bytes | None


def parse_cert_rep(reply: bytes) -> CertRep:
    """Parse a PKIOperation reply as SignedData (RFC 8894 §3.3.2, RFC 5652 §5) without checking it.

    Raises:
        IssuerReplyInvalid: not a SignedData with a signer and signed attributes.
    """
    try:
        info = cms.ContentInfo.load(reply)
        if info["content_type"].native != "signed_data":
            raise ValueError("not a SignedData")
        signed = info["content"]
        signer = signed["signer_infos"][0]
        attrs = signer["signed_attrs"]
        if not isinstance(attrs, cms.CMSAttributes) or len(attrs) == 0:
            raise ValueError("no signed attributes")
        values = _attr_values(attrs)
        digest = signer["digest_algorithm"]["algorithm"].native
        signature = signer["signature"].native
        message_digest = next((a["values"][0].native for a in attrs if a["type"].native == "message_digest"), None)
        content = signed["encap_content_info"]["content"].native
        if not isinstance(digest, str) or not isinstance(signature, bytes):
            raise ValueError("no digest algorithm or signature")
        if message_digest is not None and not isinstance(message_digest, bytes):
            raise ValueError("messageDigest is not an OCTET STRING")
        if content is not None and not isinstance(content, bytes):
            raise ValueError("the content is not an OCTET STRING")
        return CertRep(digest, signature, b"\x31" + attrs.dump()[1:], values, message_digest, content)
    except PARSE_ERRORS as exc:
        raise IssuerReplyInvalid("the SCEP server's reply is not a SCEP message") from exc


class IssuerAndSubject(core.Sequence):
    """The content of a CertPoll (RFC 8894 §3.3.3): the CA's name and the requested subject."""

    _fields = [("issuer", asn1_x509.Name), ("subject", asn1_x509.Name)]


def _issuer_and_subject(ca: x509.Certificate, subject: x509.Name) -> bytes:
    return IssuerAndSubject({"issuer": asn1_x509.Name.load(ca.subject.public_bytes()),
                             "subject": asn1_x509.Name.load(subject.public_bytes())}).dump()


def ra_proof_message(slot: str, transaction_id: str, certificate_fingerprint: str, nonce_hex: str,
                     signed_at: str) -> bytes:
    """The bytes the old key signs for the RA hook: a fixed label and ``key=value`` lines (UTF-8).

    An RA checks the signature with the old certificate's key, that ``certificate`` is the SHA-256
    of that certificate, that ``time`` is recent, and that it has not seen the nonce before.
    """
    return (f"cardrenew SCEP renewal authorisation v1\nslot={slot}\ntransaction={transaction_id}\n"
            f"certificate={certificate_fingerprint}\nnonce={nonce_hex}\ntime={signed_at}\n").encode()


class ScepIssuer:
    """A SCEP CA as an :class:`card.enrollment.Issuer` (RFC 8894)."""

    name = "SCEP CA"

    def __init__(self, settings: ScepIssuerSettings, window_days: int = 90, cancel: threading.Event | None = None) -> None:
        self.settings = settings
        self.window_days = window_days
        self.cancel = cancel if cancel is not None else threading.Event()
        """Set by the owner (the CLI on SIGTERM/SIGINT/SIGHUP, the app closing) to end every wait
        here within a second: HTTP replies, the RA hook, the PENDING poll (OperationCancelled)."""
        self._ca: list[x509.Certificate] | None = None
        self._caps: set[str] | None = None

    # -- HTTP ------------------------------------------------------------------------------
    def _http(self, operation: str, body: bytes | None = None) -> tuple[bytes, str]:
        """One SCEP HTTP request (RFC 8894 §4.1) with the total deadline ``timeout_s``, the size cap
        ``max_response_bytes`` and the cancellation token; returns (body, Content-Type).

        Raises:
            IssuerUnavailable: no connection, HTTP status other than 200, the deadline passed, too large.
            OperationCancelled: :attr:`cancel` was set.
        """
        url = f"{self.settings.url}?{urllib.parse.urlencode({'operation': operation})}"
        reply = http.request(url, body=body, content_type="application/x-pki-message" if body is not None else None,
                             timeout_s=self.settings.timeout_s, max_bytes=self.settings.max_response_bytes,
                             cancel=self.cancel, what=f"the SCEP server ({operation})")
        return reply.body, reply.content_type

    def capabilities(self) -> set[str]:
        """GetCACaps (RFC 8894 §3.5.2), upper-cased."""
        if self._caps is None:
            body, _ = self._http("GetCACaps")
            self._caps = parse_ca_caps(body)
        return self._caps

    def ca_certificates(self) -> list[x509.Certificate]:
        """GetCACert (RFC 8894 §4.2), checked against the pinned SHA-256 fingerprint.

        Raises:
            IssuerRejected: no fingerprint configured, or it does not match (GetCACert is unauthenticated).
            IssuerReplyInvalid: the reply is not a certificate or a certs-only PKCS#7.
        """
        if self._ca is None:
            body, ctype = self._http("GetCACert")
            certs = parse_ca_certificates(body, ctype)
            pinned = self.settings.ca_fingerprint
            if not pinned:
                raise IssuerRejected("issuer.ca_fingerprint is not configured: the SCEP CA certificate cannot be trusted")
            if not any(fingerprint(c) == pinned for c in certs):
                raise IssuerRejected("the SCEP server's CA certificate does not match the pinned fingerprint; "
                                     "nothing was changed")
            if not isinstance(certs[0].public_key(), rsa.RSAPublicKey):
                raise IssuerRejected("the SCEP CA certificate holds no RSA key; this SCEP client needs an RSA CA "
                                     "(requests are encrypted to it, RFC 8894 §3.2.2); nothing was changed")
            self._ca = certs
        return self._ca

    def supported_key_types(self) -> set[str]:
        # The reply is encrypted to the requesting key: only RSA keys can read it (RFC 8894 §3.2.1.2);
        # scepserver 2.1.0 also signs with the CSR's algorithm on an RSA CA key (EC fails).
        return {"RSA2048"}

    # -- authorisation -------------------------------------------------------------------
    def _ask_ra(self, slot: str, old_certificate: x509.Certificate, transaction_id: str,
                sign_with_old_key: Signer) -> Secret:
        """Run the RA hook (``issuer.challenge_command``) while the old key exists; return its challenge.

        The hook's argv may use ``{slot}``, ``{transaction_id}``, ``{fingerprint}`` (SHA-256 of the old
        certificate, hex) and ``{serial}`` (hex). Its stdin is one JSON object, the proof of possession
        of the old key (see :func:`ra_proof_message`)::

            {"version": 1, "slot": "9A", "transaction_id": "…", "nonce": "<hex, 32 bytes>",
             "signed_at": "<ISO 8601 UTC>", "old_certificate": "<PEM>",
             "signed_message": "<base64>", "signature": "<base64>", "hash": "SHA-256"}

        The signature is the old key's (PKCS#1 v1.5 for RSA, DER ECDSA for EC) over ``signed_message``.
        The hook prints a one-time challenge on its first stdout line and exits 0. Exit 75
        (EX_TEMPFAIL) means the RA is unavailable now; any other exit is a refusal whose reason is the
        hook's last stderr line (shown to the user: it must not hold a secret). stdout is never logged.

        Raises:
            RaRejected: the RA refused (the hook exited non-zero).
            IssuerRejected: the hook printed no challenge, or one that is not 1–255 printable characters.
            RaUnavailable: the hook timed out, was ended by a signal, or exited 75.
            ConfigError: the hook cannot be run.
        """
        assert self.settings.challenge_command
        fp = fingerprint(old_certificate)
        values = {"slot": slot, "transaction_id": transaction_id, "fingerprint": fp,
                  "serial": f"{old_certificate.serial_number:X}"}
        argv = [part.format_map(values) for part in self.settings.challenge_command]
        nonce = os.urandom(32).hex()
        signed_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
        message = ra_proof_message(slot, transaction_id, fp, nonce, signed_at)
        proof = {
            "version": 1, "slot": slot, "transaction_id": transaction_id, "nonce": nonce, "signed_at": signed_at,
            "old_certificate": old_certificate.public_bytes(serialization.Encoding.PEM).decode(),
            "signed_message": base64.b64encode(message).decode(),
            "signature": base64.b64encode(sign_with_old_key(message)).decode(), "hash": "SHA-256",
        }
        returncode, stdout, stderr = self._run_hook(argv, json.dumps(proof))
        said = "".join(ch for ch in next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
                       if ch.isprintable())[:200]  # shown to the user: no terminal control sequences
        if returncode == 75:
            raise RaUnavailable(f"the RA is unavailable for slot {slot}" + (f": {said}" if said else ""))
        if returncode < 0:
            raise RaUnavailable(f"the RA hook {argv[0]!r} was ended by signal {-returncode}" +
                                (f": {said}" if said else ""))
        if returncode != 0:
            raise RaRejected(f"the RA refused the renewal of slot {slot}" + (f": {said}" if said else
                             f" (its hook exited {returncode})") + "; nothing was changed")
        challenge = stdout.split("\n", 1)[0].removesuffix("\r").strip(" \t")
        if not challenge:
            raise IssuerRejected(f"the RA hook gave no challenge for slot {slot}; nothing was changed")
        if len(challenge) > 255 or not challenge.isprintable():  # PKCS#9 challengePassword: ub 255
            raise IssuerRejected(f"the RA hook gave an unusable challenge for slot {slot} (more than 255 characters, "
                                 "or control characters); nothing was changed")
        return Secret(challenge)

    def _run_hook(self, argv: list[str], stdin: str) -> tuple[int, str, str]:
        """Run the RA hook in its own process group; returns (exit status, stdout, stderr),
        undecodable bytes replaced.

        The pipes are read without blocking, under ``timeout_s`` and :attr:`cancel`: when either
        passes while the hook runs, the whole process group (the hook and its children) is killed
        at once (SIGKILL) and reading stops at once, even if a detached grandchild (``setsid``)
        still holds the pipes. Once the hook itself has exited, reading stops at EOF or after
        :data:`HOOK_EXIT_GRACE_S`; what is left of its process group is then killed. At most
        :data:`HOOK_STDOUT_CAP` bytes of stdout are accepted (the challenge is one line); only the
        last :data:`HOOK_STDERR_KEEP` bytes of stderr are kept (the reason is its last line).

        Raises:
            ConfigError: the hook cannot be run (missing, not executable).
            RaUnavailable: it did not finish within ``timeout_s`` (RA-DOWN, retried).
            RaRejected: it printed more than :data:`HOOK_STDOUT_CAP` bytes on stdout (RA-REFUSED, final).
            OperationCancelled: :attr:`cancel` was set while it ran.
        """
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)  # bytes: no newline translation of the challenge
        except OSError as exc:
            raise ConfigError(f"issuer.challenge_command: {argv[0]!r} cannot be run ({exc.strerror or exc})") from exc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        deadline = http.Deadline(self.settings.timeout_s, self.cancel)
        out, err = bytearray(), bytearray()
        pending = memoryview(stdin.encode())
        fired: str | None = None
        overflow = False
        exited_at: float | None = None
        sel = selectors.DefaultSelector()
        try:
            for pipe in (proc.stdout, proc.stderr):
                os.set_blocking(pipe.fileno(), False)
                sel.register(pipe, selectors.EVENT_READ)
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE)
            while sel.get_map():
                if proc.poll() is not None:  # the hook itself has exited: its answer is complete
                    now = time.monotonic()
                    exited_at = now if exited_at is None else exited_at
                    if now - exited_at > HOOK_EXIT_GRACE_S or deadline.remaining() <= 0 or deadline.cancel.is_set():
                        break  # a leftover child holds the pipes: stop reading
                elif deadline.cancel.is_set():
                    fired = "cancelled"
                    break
                elif deadline.remaining() <= 0:
                    fired = "deadline"
                    break
                for key, _events in sel.select(max(0.0, min(HOOK_POLL_S, deadline.remaining()))):
                    pipe = key.fileobj
                    if pipe is proc.stdin:
                        try:
                            pending = pending[os.write(proc.stdin.fileno(), pending[:65536]):]
                        except BlockingIOError:
                            continue
                        except OSError:  # BrokenPipeError: the hook does not read its stdin
                            pending = pending[:0]
                        if not pending:
                            sel.unregister(pipe)
                            proc.stdin.close()
                        continue
                    try:
                        chunk = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(pipe)
                    elif pipe is proc.stdout:
                        out += chunk
                        overflow = len(out) > HOOK_STDOUT_CAP
                    else:
                        err += chunk
                        del err[:-HOOK_STDERR_KEEP]
                if overflow:
                    break
        finally:
            sel.close()
            # Never leave the hook or its children running (the leader's pgid stays reserved while
            # any member of its group lives, so this cannot hit another program's group).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                with contextlib.suppress(OSError):
                    pipe.close()
        if fired == "cancelled":
            raise OperationCancelled(f"stopped while the RA hook {argv[0]!r} ran; it was ended")
        if fired == "deadline":
            raise RaUnavailable(f"the RA hook {argv[0]!r} did not answer within {self.settings.timeout_s:g} s")
        if overflow:
            raise RaRejected(f"the RA hook {argv[0]!r} printed more than {HOOK_STDOUT_CAP // 1024} KiB on stdout "
                             "(a challenge is one line); it was ended and nothing was changed")
        return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def challenge_password(self, grant: RenewalGrant) -> Secret | None:
        """The challenge password for the CSR of ``grant``: the RA's one-time challenge carried by the
        grant, else the configured static ``challenge`` (RFC 8894 §2.2)."""
        if grant.secret is not None:
            return grant.secret
        if self.settings.challenge_command:
            raise IssuerRejected(f"the RA's one-time challenge for slot {grant.slot} is no longer known "
                                 f"(transaction {grant.grant_id})")
        return self.settings.challenge

    def authorize_renewal(self, slot: str, old_certificate: x509.Certificate, sign_with_old_key: Signer) -> RenewalGrant:
        """Pin the CA, check it can certify this renewal and, with an RA hook, obtain the one-time
        challenge, all while the old key still exists (DESIGN §3 step 2).

        A static ``challenge`` cannot be checked here: scepserver (like RFC 8894 §2.2 servers in
        general) reads it only inside a PKIOperation, whose CSR must be signed by the new key.

        Raises:
            IssuerRejected: CA fingerprint mismatch, no POST PKIOperation, expired certificate, RA refusal.
            IssuerUnavailable: the CA or the RA cannot be reached.
        """
        cas = self.ca_certificates()
        caps = self.capabilities()
        if "POSTPKIOPERATION" not in caps:
            raise IssuerRejected("the SCEP server does not accept POST PKIOperation")
        del cas  # pinned and checked; the old certificate may come from another CA (a CA migration)
        now = dt.datetime.now(dt.timezone.utc)
        if old_certificate.not_valid_after_utc <= now:
            raise IssuerRejected(f"the certificate in slot {slot} has expired; self-service renewal is not allowed")
        transaction_id = uuid.uuid4().hex.upper()
        secret = (self._ask_ra(slot, old_certificate, transaction_id, sign_with_old_key)
                  if self.settings.challenge_command else None)
        return RenewalGrant(transaction_id, slot, old_certificate.subject.public_bytes().hex(),
                            fingerprint(old_certificate), now + dt.timedelta(days=1), secret)

    # -- issuance --------------------------------------------------------------------------
    def request_signer_slot(self, slot: str) -> str | None:
        """The slot whose certificate and key sign the request for ``slot``, or None (PKCSReq).

        With ``RenewalReq`` a slot cannot sign its own renewal: PIV GENERATE has destroyed the old
        key before the CSR exists (enrollment-protocols.md T7). So 9C signs for 9A and 9A for every
        other slot ("leapfrog"): when both are renewed, the first is signed by the other's old key,
        the second by the first's new key. The signer must hold an RSA key: the CA encrypts its
        reply to it (RFC 8894 §3.3.2).
        """
        if self.settings.message_type != "RenewalReq":
            return None
        return "9C" if slot.upper() == "9A" else "9A"

    def issue(self, grant: RenewalGrant, csr: x509.CertificateSigningRequest, new_key: PublicKeyTypes,
              card_key: CardKey | None = None, *, request_signer: RequestSigner | None = None,
              not_after_limit: dt.datetime | None = None) -> IssuedCertificate:
        """PKIOperation (RFC 8894 §3.3.1): PKCSReq signed by the new key under a self-signed transport
        certificate, or RenewalReq signed by ``request_signer``; while the CA answers PENDING, a
        CertPoll (§3.3.3) after each delay of ``poll_schedule_s`` (seconds), then IssuancePending.
        ``not_after_limit`` is not sent: SCEP has no way to ask for a notAfter (the engine checks
        the certificate against the card's expiry).

        Raises:
            IssuerRejected: FAILURE (failInfo in words), a reply that fails its checks.
            IssuerUnavailable: HTTP errors, no connection.
            IssuancePending: still PENDING when the schedule is used up (the transaction ID is the grant's).
            OperationCancelled: :attr:`cancel` was set during a wait (HTTP, or between polls).
        """
        if card_key is None or not isinstance(new_key, rsa.RSAPublicKey):
            raise IssuerRejected("SCEP needs the card's RSA key to sign the request and read the reply")
        ca = self.ca_certificates()[0]
        if self.settings.message_type == "RenewalReq":
            if request_signer is None or not isinstance(request_signer.certificate.public_key(), rsa.RSAPublicKey):
                raise IssuerRejected("a SCEP RenewalReq needs another RSA certificate of this card to sign the request")
            signer_cert = asn1_x509.Certificate.load(request_signer.certificate.public_bytes(serialization.Encoding.DER))
            signer_key, message_type = request_signer.key, MESSAGE_RENEWAL_REQ
        else:
            signer_cert, signer_key, message_type = self._transport_certificate(card_key), card_key, MESSAGE_PKCS_REQ
        status: str | None = None
        if grant.request_sent:  # an earlier run's request may have been issued and its reply lost
            try:
                status, payload = self._cert_poll(ca, csr.subject, signer_cert, signer_key, grant.grant_id)
            except (IssuerRejected, IssuerUnavailable) as exc:
                logger.info("CertPoll for transaction %s gave no result (%s)", grant.grant_id, exc)
        if status in (None, STATUS_FAILURE):  # never sent, or the CA holds no result for it: send the request
            nonce = os.urandom(16)
            message = self._pki_message(csr.public_bytes(serialization.Encoding.DER), ca, signer_cert, signer_key,
                                        grant.grant_id, nonce, message_type)
            status, payload = self._read_cert_rep(self._http("PKIOperation", message)[0], ca, grant.grant_id, nonce)
            if status == STATUS_FAILURE and grant.request_sent:
                raise RetryRefused(f"the SCEP CA refused the request for slot {grant.slot} when it was sent again "
                                   f"(transaction {grant.grant_id}; {_fail_text(payload).split(':')[0]}); "
                                   "it may have issued a certificate for the first attempt, whose answer was lost")
        for delay in self.settings.poll_schedule_s:
            if status != STATUS_PENDING:
                break
            if self.cancel.wait(delay):  # PENDING: CertPoll in the same transaction (RFC 8894 §3.3.3)
                raise OperationCancelled(f"stopped while the SCEP CA had not issued yet (transaction {grant.grant_id})")
            status, payload = self._cert_poll(ca, csr.subject, signer_cert, signer_key, grant.grant_id)
        if status == STATUS_SUCCESS:
            return self._certificate_from(payload, signer_key, new_key)
        if status == STATUS_FAILURE:
            raise IssuerRejected(f"the SCEP CA refused: {_fail_text(payload)}")
        raise IssuancePending(grant.grant_id)  # still PENDING when the schedule is used up

    def _cert_poll(self, ca: x509.Certificate, subject: x509.Name, signer_cert: asn1_x509.Certificate,
                   signer_key: CardKey, transaction_id: str) -> tuple[str, bytes]:
        """One CertPoll (RFC 8894 §3.3.3): IssuerAndSubject in the transaction, a fresh senderNonce."""
        nonce = os.urandom(16)
        poll = self._pki_message(_issuer_and_subject(ca, subject), ca, signer_cert, signer_key, transaction_id,
                                 nonce, MESSAGE_CERT_POLL)
        return self._read_cert_rep(self._http("PKIOperation", poll)[0], ca, transaction_id, nonce)

    def _transport_certificate(self, card_key: CardKey) -> asn1_x509.Certificate:
        """A self-signed certificate for the new key, valid one hour, signed on the card (RFC 8894 §2.3)."""
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        name = asn1_x509.Name.build({"common_name": "cardrenew SCEP transport"})
        tbs = asn1_x509.TbsCertificate({
            "version": "v3",
            "serial_number": int.from_bytes(os.urandom(8), "big"),
            "signature": {"algorithm": "sha256_rsa"},
            "issuer": name,
            "validity": {"not_before": asn1_x509.Time(name="utc_time", value=now - dt.timedelta(minutes=5)),
                         "not_after": asn1_x509.Time(name="utc_time", value=now + dt.timedelta(hours=1))},
            "subject": name,
            "subject_public_key_info": asn1_keys.PublicKeyInfo.load(public_key_der(card_key.public_key)),
        })
        signature = card_key.sign(tbs.dump())
        return asn1_x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": {"algorithm": "sha256_rsa"},
                                      "signature_value": signature})

    def _pki_message(self, content: bytes, ca: x509.Certificate, signer_cert: asn1_x509.Certificate,
                     signer_key: CardKey, transaction_id: str, nonce: bytes, message_type: str) -> bytes:
        """SignedData (signed on the card by ``signer_key``, RFC 8894 §3.2.1) around EnvelopedData to
        the CA (§3.2.2) holding ``content`` (DER: the CSR, or IssuerAndSubject for a CertPoll)."""
        caps = self.capabilities()
        if "AES" in caps:
            cek, alg = os.urandom(16), "aes128_cbc"
            iv = os.urandom(16)
            cipher = Cipher(algorithms.AES(cek), modes.CBC(iv))
            block_bits = 128
        elif "DES3" in caps or self.settings.allow_legacy_algorithms:
            cek, alg = os.urandom(24), "tripledes_3key"
            iv = os.urandom(8)
            cipher = Cipher(TripleDES(cek), modes.CBC(iv))
            block_bits = 64
        else:
            raise IssuerRejected("the SCEP server offers neither AES nor 3DES; allow_legacy_algorithms is off")
        padder = padding.PKCS7(block_bits).padder()
        enc = cipher.encryptor()
        ciphertext = enc.update(padder.update(content) + padder.finalize()) + enc.finalize()
        ca_key = ca.public_key()
        assert isinstance(ca_key, rsa.RSAPublicKey)
        asn1_ca = asn1_x509.Certificate.load(ca.public_bytes(serialization.Encoding.DER))
        enveloped = cms.ContentInfo({"content_type": "enveloped_data", "content": cms.EnvelopedData({
            "version": "v0",
            "recipient_infos": [cms.RecipientInfo(name="ktri", value=cms.KeyTransRecipientInfo({
                "version": "v0",
                "rid": cms.RecipientIdentifier(name="issuer_and_serial_number", value=cms.IssuerAndSerialNumber({
                    "issuer": asn1_ca.issuer, "serial_number": asn1_ca.serial_number})),
                "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
                "encrypted_key": ca_key.encrypt(cek, asym_padding.PKCS1v15()),
            }))],
            "encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {"algorithm": alg, "parameters": core.OctetString(iv)},
                "encrypted_content": ciphertext,
            },
        })}).dump()
        signed_attrs = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(enveloped).digest()]}),
            _attr(OID_MESSAGE_TYPE, core.PrintableString(message_type)),
            _attr(OID_TRANSACTION_ID, core.PrintableString(transaction_id)),
            _attr(OID_SENDER_NONCE, core.OctetString(nonce)),
        ])
        signature = signer_key.sign(signed_attrs.dump())
        signer = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value=cms.IssuerAndSerialNumber({
                "issuer": signer_cert.issuer, "serial_number": signer_cert.serial_number})),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
            "signature": signature,
        })
        return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData({
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "data", "content": enveloped},
            "certificates": [signer_cert],
            "signer_infos": [signer],
        })}).dump()

    def _read_cert_rep(self, reply: bytes, ca: x509.Certificate, transaction_id: str, nonce: bytes) -> tuple[str, bytes]:
        """Verify a CertRep (RFC 8894 §3.3.2); returns (pkiStatus, enveloped content or failInfo).

        Raises:
            IssuerReplyInvalid: not a SCEP message, or SUCCESS without content.
            IssuerRejected: a check failed (signer, type, transaction, nonce, digest, algorithm).
        """
        rep = parse_cert_rep(reply)
        digest_name = rep.digest_algorithm
        if digest_name not in ("sha256", "sha384", "sha512") and not (
                digest_name == "sha1" and self.settings.allow_legacy_algorithms):
            raise IssuerRejected(f"the SCEP server signed its reply with {digest_name.upper()[:40]}; set "
                                 "issuer.allow_legacy_algorithms = true to accept this server's SHA-1/DES replies")
        digest = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
                  "sha512": hashes.SHA512()}[digest_name]
        ca_key = ca.public_key()
        if not isinstance(ca_key, rsa.RSAPublicKey):
            raise IssuerRejected("the SCEP CA certificate holds no RSA key")
        try:
            ca_key.verify(rep.signature, rep.signed_attributes, asym_padding.PKCS1v15(), digest)
        except (InvalidSignature, ValueError) as exc:
            raise IssuerRejected("the SCEP reply is not signed by the pinned CA") from exc
        values = rep.attributes
        if values.get(OID_MESSAGE_TYPE, b"") != MESSAGE_CERT_REP.encode():
            raise IssuerRejected("the SCEP reply is not a CertRep")
        if values.get(OID_TRANSACTION_ID, b"") != transaction_id.encode():
            raise IssuerRejected("the SCEP reply belongs to another transaction")
        if values.get(OID_RECIPIENT_NONCE) != nonce:
            raise IssuerRejected("the SCEP reply does not answer our request (recipientNonce differs)")
        status = values.get(OID_PKI_STATUS, b"").decode("ascii", "replace")
        if status == STATUS_FAILURE:
            return status, values.get(OID_FAIL_INFO, b"?")
        if status == STATUS_PENDING:
            return status, b""
        if status != STATUS_SUCCESS:
            raise IssuerRejected(f"the SCEP reply has an unknown pkiStatus {status[:20]!r}")
        if rep.content is None:
            raise IssuerReplyInvalid("the SCEP server's SUCCESS reply carries no content")
        h = hashes.Hash(digest)
        h.update(rep.content)
        if rep.message_digest != h.finalize():
            raise IssuerRejected("the SCEP reply's content does not match its signed digest")
        return status, rep.content

    def _certificate_from(self, enveloped_der: bytes, recipient_key: CardKey,
                          new_key: PublicKeyTypes) -> IssuedCertificate:
        """Decrypt the CertRep's EnvelopedData with the key that signed the request (on the card) and
        pick the certificate for ``new_key`` from its degenerate certs-only SignedData (§3.3.2).

        Nothing reaches the card unless the envelope parses and its encrypted key is exactly one RSA
        block of the card key.

        Raises:
            IssuerReplyInvalid: the envelope or the decrypted certificates do not parse.
            IssuerRejected: a cipher not allowed, a block that does not decrypt, no certificate for the key.
        """
        env = parse_envelope(enveloped_der)
        key_size = getattr(recipient_key.public_key, "key_size", 0)
        if len(env.encrypted_key) != (key_size + 7) // 8:
            raise IssuerReplyInvalid("the SCEP reply's encrypted key is not one block of the card key")
        name = env.cipher
        if name == "des" and not self.settings.allow_legacy_algorithms:
            raise IssuerRejected("the SCEP server encrypted its reply with single DES; set "
                                 "issuer.allow_legacy_algorithms = true to accept this server's SHA-1/DES replies")
        if name not in _CIPHERS:
            raise IssuerRejected(f"the SCEP reply uses an unsupported cipher ({name[:40]})")
        key_len, iv_len = _CIPHERS[name]
        if len(env.iv) != iv_len:
            raise IssuerReplyInvalid("the SCEP reply's cipher parameters are wrong")
        cek = _pkcs1_type2_unpad(recipient_key.rsa_decipher(env.encrypted_key))  # on the card
        if len(cek) != key_len:
            raise IssuerRejected("the SCEP reply could not be decrypted with the card key")
        if name == "des":
            cipher, bits = Cipher(TripleDES(cek * 3), modes.CBC(env.iv)), 64  # DES = 3DES with K1=K2=K3
        elif name == "tripledes_3key":
            cipher, bits = Cipher(TripleDES(cek), modes.CBC(env.iv)), 64
        else:
            cipher, bits = Cipher(algorithms.AES(cek), modes.CBC(env.iv)), 128
        try:
            dec = cipher.decryptor()
            padded = dec.update(env.ciphertext) + dec.finalize()
            unpadder = padding.PKCS7(bits).unpadder()
            plain = unpadder.update(padded) + unpadder.finalize()
        except ValueError as exc:
            raise IssuerRejected("the SCEP reply could not be decrypted") from exc
        try:
            certs_only = cms.ContentInfo.load(plain)
            if certs_only["content_type"].native != "signed_data":
                raise ValueError("not a certs-only SignedData")
            choices = certs_only["content"]["certificates"]
            certs = [x509.load_der_x509_certificate(c.chosen.dump()) for c in choices] if choices.native else []
            for cert in certs:
                if key_matches(cert, new_key):
                    return IssuedCertificate(cert, tuple(self.ca_certificates()))
        except PARSE_ERRORS as exc:
            raise IssuerReplyInvalid("the certificates in the SCEP reply do not parse") from exc
        raise IssuerRejected("the SCEP reply holds no certificate for the key generated on the card")


_CIPHERS = {"des": (8, 8), "tripledes_3key": (24, 8), "aes128_cbc": (16, 16), "aes192_cbc": (24, 16),
            "aes256_cbc": (32, 16)}
"""Content-encryption algorithms of a CertRep: asn1crypto name → (key bytes, IV bytes)."""


@dataclass(frozen=True)
class Envelope:
    """The parts of a CertRep's EnvelopedData (RFC 5652 §6) needed to decrypt it."""

    encrypted_key: bytes
    cipher: str
    iv: bytes
    ciphertext: bytes


def parse_envelope(enveloped_der: bytes) -> Envelope:
    """Parse the EnvelopedData inside a SUCCESS CertRep (RFC 8894 §3.3.2; one KeyTransRecipientInfo).

    Raises:
        IssuerReplyInvalid: anything that is not such an EnvelopedData.
    """
    try:
        info = cms.ContentInfo.load(enveloped_der)
        if info["content_type"].native != "enveloped_data":
            raise ValueError("not an EnvelopedData")
        env = info["content"]
        recipient = env["recipient_infos"][0]
        if recipient.name != "ktri":
            raise ValueError("not a key-transport recipient")
        encrypted_key = recipient.chosen["encrypted_key"].native
        eci = env["encrypted_content_info"]
        alg = eci["content_encryption_algorithm"]
        cipher = alg["algorithm"].native
        iv = alg["parameters"].native
        ciphertext = _encrypted_content(eci)
        if not (isinstance(encrypted_key, bytes) and isinstance(cipher, str) and isinstance(iv, bytes)):
            raise ValueError("missing key, algorithm or IV")
        return Envelope(encrypted_key, cipher, iv, ciphertext)
    except PARSE_ERRORS as exc:
        raise IssuerReplyInvalid("the SCEP reply's encrypted content does not parse") from exc
