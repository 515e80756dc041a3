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

The client is this module; the messages (signed pkiMessage, CertRep) are
:mod:`card.enrollment.scep_messages`, their EnvelopedData :mod:`card.enrollment.scep_envelope`, the
RA hook :mod:`card.enrollment.scep_ra_hook`, and the settings :mod:`card.enrollment.scep_settings`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import urllib.parse
import uuid

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from card.certificates import fingerprint
from card.enrollment import http
from card.enrollment.base import (
    CardKey,
    DryRunUnsupported,
    IssuancePending,
    IssuedCertificate,
    IssuerRejected,
    IssuerUnavailable,
    RenewalGrant,
    RequestSigner,
    RetryRefused,
    Signer,
)
from card.enrollment.scep_envelope import decrypt_reply
from card.enrollment.scep_messages import (
    MESSAGE_CERT_POLL,
    MESSAGE_PKCS_REQ,
    MESSAGE_RENEWAL_REQ,
    STATUS_FAILURE,
    STATUS_PENDING,
    STATUS_SUCCESS,
    certificate_for_key,
    fail_text,
    issuer_and_subject,
    parse_ca_caps,
    parse_ca_certificates,
    pki_message,
    read_cert_rep,
    transport_certificate,
)
from card.enrollment.scep_ra_hook import ask_ra
from card.enrollment.scep_settings import ScepIssuerSettings
from card.words import expired
from card.errors import OperationCancelled
from card.secret import Secret

logger = logging.getLogger(__name__)


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
            raise IssuerRejected(expired(f"in slot {slot}"))
        transaction_id = uuid.uuid4().hex.upper()
        secret = (ask_ra(self.settings, self.cancel, slot, old_certificate, transaction_id, sign_with_old_key)
                  if self.settings.challenge_command else None)
        return RenewalGrant(transaction_id, slot, old_certificate.subject.public_bytes().hex(),
                            fingerprint(old_certificate), now + dt.timedelta(days=1), secret)

    def check_renewal(self, slot: str, old_certificate: x509.Certificate, sign_with_old_key: Signer) -> str:
        """The dry mode of :meth:`authorize_renewal` (:class:`~card.enrollment.base.DryRunIssuer`):
        the pinned CA, POST PKIOperation, the old certificate's validity and, with an RA hook that
        honours it (``issuer.challenge_dry_run``), the RA's answer to a proof of possession sent with
        ``"dry_run": true`` — no challenge is handed out or spent.

        Raises:
            IssuerRejected, RaRejected: a real request would be refused.
            IssuerUnavailable: the CA or RA cannot be reached.
            DryRunUnsupported: the RA hook does not declare a dry mode (it is then not run at all).
        """
        self.ca_certificates()
        if "POSTPKIOPERATION" not in self.capabilities():
            raise IssuerRejected("the SCEP server does not accept POST PKIOperation")
        if old_certificate.not_valid_after_utc <= dt.datetime.now(dt.timezone.utc):
            raise IssuerRejected(expired(f"in slot {slot}"))
        if not self.settings.challenge_command:
            return ("the SCEP server is pinned and accepts POST PKIOperation; a static challenge is checked only by "
                    "a real request (RFC 8894 §2.2)")
        if not self.settings.challenge_dry_run:
            raise DryRunUnsupported("the RA hook (issuer.challenge_command) does not declare a dry mode, so it was not "
                                    "run (a real run would hand out a one-time challenge); set "
                                    "issuer.challenge_dry_run = true once the hook honours \"dry_run\"")
        ask_ra(self.settings, self.cancel, slot, old_certificate, uuid.uuid4().hex.upper(), sign_with_old_key,
               dry_run=True)
        return "the RA hook would grant it (asked in its dry mode: no challenge was handed out)"

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
        status, payload = self._exchange(ca, csr, signer_cert, signer_key, grant, message_type)
        if status == STATUS_SUCCESS:
            return self._certificate_from(payload, signer_key, new_key)
        if status == STATUS_FAILURE:
            raise IssuerRejected(f"the SCEP CA refused: {fail_text(payload)}")
        raise IssuancePending(grant.grant_id)  # still PENDING when the schedule is used up

    def _exchange(self, ca: x509.Certificate, csr: x509.CertificateSigningRequest, signer_cert: asn1_x509.Certificate,
                  signer_key: CardKey, grant: RenewalGrant, message_type: str) -> tuple[str, bytes]:
        """The request of ``grant`` sent (or, after a lost answer, first asked for with a CertPoll)
        and CertPolls while PENDING (§3.3.3), one after each delay of ``poll_schedule_s``, each wait
        ended by :attr:`cancel`. Returns the last (pkiStatus, content or failInfo).

        Raises:
            RetryRefused: FAILURE for a request sent again under the same grant.
            OperationCancelled: :attr:`cancel` was set between polls.
        """
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
                                   f"(transaction {grant.grant_id}; {fail_text(payload).split(':')[0]}); "
                                   "it may have issued a certificate for the first attempt, whose answer was lost")
        for delay in self.settings.poll_schedule_s:
            if status != STATUS_PENDING:
                break
            if self.cancel.wait(delay):  # PENDING: CertPoll in the same transaction (RFC 8894 §3.3.3)
                raise OperationCancelled(f"stopped while the SCEP CA had not issued yet (transaction {grant.grant_id})")
            status, payload = self._cert_poll(ca, csr.subject, signer_cert, signer_key, grant.grant_id)
        assert status is not None  # sent above when no CertPoll answered
        return status, payload

    def _cert_poll(self, ca: x509.Certificate, subject: x509.Name, signer_cert: asn1_x509.Certificate,
                   signer_key: CardKey, transaction_id: str) -> tuple[str, bytes]:
        """One CertPoll (RFC 8894 §3.3.3): IssuerAndSubject in the transaction, a fresh senderNonce."""
        nonce = os.urandom(16)
        poll = self._pki_message(issuer_and_subject(ca, subject), ca, signer_cert, signer_key, transaction_id,
                                 nonce, MESSAGE_CERT_POLL)
        return self._read_cert_rep(self._http("PKIOperation", poll)[0], ca, transaction_id, nonce)

    # -- the messages, with this client's settings (tests replace these to drive the poll loop) ----
    def _transport_certificate(self, card_key: CardKey) -> asn1_x509.Certificate:
        return transport_certificate(card_key)

    def _pki_message(self, content: bytes, ca: x509.Certificate, signer_cert: asn1_x509.Certificate,
                     signer_key: CardKey, transaction_id: str, nonce: bytes, message_type: str) -> bytes:
        return pki_message(content, ca, signer_cert, signer_key, transaction_id, nonce, message_type,
                           self.capabilities(), self.settings.allow_legacy_algorithms)

    def _read_cert_rep(self, reply: bytes, ca: x509.Certificate, transaction_id: str, nonce: bytes) -> tuple[str, bytes]:
        return read_cert_rep(reply, ca, transaction_id, nonce, self.settings.allow_legacy_algorithms)

    def _certificate_from(self, enveloped_der: bytes, recipient_key: CardKey,
                          new_key: PublicKeyTypes) -> IssuedCertificate:
        """Decrypt the CertRep's EnvelopedData with the key that signed the request (on the card) and
        pick the certificate for ``new_key`` from its degenerate certs-only SignedData (§3.3.2),
        with the CA's chain."""
        plain = decrypt_reply(enveloped_der, recipient_key, self.settings.allow_legacy_algorithms)
        return IssuedCertificate(certificate_for_key(plain, new_key), tuple(self.ca_certificates()))
