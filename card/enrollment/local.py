"""The embedded CA (issuer type ``local``): a directory with ``ca.pem``, ``ca.key`` and ``ledger.sqlite``.

It checks, in this order: the old certificate was issued by this CA; it is inside the renewal
window and not expired; a signature by the old key over a fresh nonce (proof of possession);
then at issuance the grant (single use, not expired), the CSR signature, the CSR key equals the
key generated on the card, and the CSR subject equals the old subject.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from card.certificates import fingerprint, key_matches, load_certificate, public_key_der, verify_signature
from card.enrollment.base import (
    CardKey,
    IssuedCertificate,
    IssuerRejected,
    IssuerUnavailable,
    RenewalGrant,
    RequestSigner,
    Signer,
)
from card.secret import Secret
from card.words import expired

CERT_VALIDITY_DAYS = 730
"""Validity of an issued end-entity certificate (the two-year renewal cycle)."""
GRANT_LIFETIME = dt.timedelta(hours=24)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def proof_message(slot: str, old_fingerprint: str, nonce: bytes) -> bytes:
    """The bytes the old key signs to obtain a grant (domain-separated, bound to slot and certificate)."""
    return b"cardrenew renewal authorisation v1\x00" + slot.encode() + b"\x00" + old_fingerprint.encode() + b"\x00" + nonce


def init_ca(directory: Path, common_name: str = "cardrenew Demo CA", validity_days: int = 3650) -> x509.Certificate:
    """Create an embedded CA in ``directory``: ``ca.pem`` and ``ca.key`` (PKCS#8 PEM, mode 0600).

    Raises:
        FileExistsError: the directory already holds a CA (never overwritten).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / "ca.key", directory / "ca.pem"
    if key_path.exists() or cert_path.exists():
        raise FileExistsError(f"{directory} already holds a CA")
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cardrenew")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert


class LocalCA:
    """The embedded CA as an :class:`card.enrollment.Issuer`.

    Args:
        directory: made by :func:`init_ca`. ``window_days``: how many days before expiry a
            renewal is allowed. ``now``: the CA's clock (aware UTC; injectable for tests). ``refuse_reason``: when set, every request is refused with it
            (a test and demo switch for the error path). ``cancel``: the Issuer's cancellation token.
    """

    name = "embedded CA"

    def __init__(self, directory: Path, window_days: int = 90, refuse_reason: str | None = None,
                 validity_days: int = CERT_VALIDITY_DAYS, now: Callable[[], dt.datetime] = _now,
                 cancel: threading.Event | None = None) -> None:
        self.directory = Path(directory)
        self.cancel = cancel if cancel is not None else threading.Event()
        """The :class:`~card.enrollment.base.Issuer` cancellation token; this CA never waits."""
        self._now = now
        self.window_days = window_days
        self.refuse_reason = refuse_reason
        self.validity_days = validity_days
        try:
            self.cert = x509.load_pem_x509_certificate((self.directory / "ca.pem").read_bytes())
            key = serialization.load_pem_private_key((self.directory / "ca.key").read_bytes(), None)
        except (OSError, ValueError) as exc:
            raise IssuerUnavailable(f"embedded CA at {self.directory} cannot be opened ({exc})") from exc
        self.key: CertificateIssuerPrivateKeyTypes = key  # type: ignore[assignment]  # the CA's own key, made by init_ca (EC P-384)
        self._db_path = self.directory / "ledger.sqlite"
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS grants (grant_id TEXT PRIMARY KEY, slot TEXT, old_cert BLOB,"
                " old_fp TEXT, subject BLOB, expires TEXT, used INTEGER DEFAULT 0, public_key BLOB, issued BLOB)"
            )

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._db_path, timeout=10, isolation_level=None)
        return db

    # -- Issuer ------------------------------------------------------------------------
    def ca_certificates(self) -> list[x509.Certificate]:
        return [self.cert]

    def supported_key_types(self) -> set[str]:
        return {"RSA2048", "ECCP256", "ECCP384"}

    def issue_initial(self, subject: x509.Name, public_key: PublicKeyTypes, slot: str,
                      not_before: dt.datetime, not_after: dt.datetime, email: str | None = None,
                      usage: str = "piv") -> x509.Certificate:
        """Issue a first certificate (used when creating test cards; not part of renewal).

        ``usage``: ``"piv"`` — 9C digitalSignature + nonRepudiation and emailProtection, other slots
        digitalSignature and clientAuth; ``"client-auth"`` — every slot digitalSignature and clientAuth
        (what scepserver 2.1.0 issues, so that its renewals keep the same usages)."""
        if usage not in ("piv", "client-auth"):
            raise ValueError(f"unknown certificate usage profile {usage!r}")
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]  # PIV keys: RSA or EC
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(max(not_before, self.cert.not_valid_before_utc), not_after - dt.timedelta(days=1)))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if slot == "9C" and usage == "piv":
            builder = builder.add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        else:
            builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        if email:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        return self._sign(builder, public_key)

    def _sign(self, builder: x509.CertificateBuilder, public_key: PublicKeyTypes) -> x509.Certificate:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),  # type: ignore[arg-type]  # PIV keys: RSA or EC
                                        critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self.cert.public_key()), critical=False  # type: ignore[arg-type]  # the CA's EC key
        )
        return builder.sign(self.key, hashes.SHA384())

    def authorize_renewal(self, slot: str, old_certificate: x509.Certificate, sign_with_old_key: Signer) -> RenewalGrant:
        now = self._check_old_certificate(slot, old_certificate)
        if old_certificate.not_valid_after_utc - now > dt.timedelta(days=self.window_days):
            raise IssuerRejected(f"the certificate in slot {slot} is not due for renewal yet")
        old_fp = self._check_proof(slot, old_certificate, sign_with_old_key)
        grant = RenewalGrant(uuid.uuid4().hex, slot, old_certificate.subject.public_bytes().hex(), old_fp,
                             now + GRANT_LIFETIME)
        with self._db() as db:
            db.execute(
                "INSERT INTO grants (grant_id, slot, old_cert, old_fp, subject, expires) VALUES (?,?,?,?,?,?)",
                (grant.grant_id, slot, old_certificate.public_bytes(serialization.Encoding.DER), old_fp,
                 old_certificate.subject.public_bytes(), grant.expires.isoformat()),
            )
        return grant

    def check_renewal(self, slot: str, old_certificate: x509.Certificate, sign_with_old_key: Signer) -> str:
        """The dry mode of :meth:`authorize_renewal` (:class:`~card.enrollment.base.DryRunIssuer`): the
        same checks (issued by this CA, not expired, the old key's proof of possession), but no grant
        is recorded in the ledger. A certificate not yet in the renewal window passes, with the date
        from which a grant would be given.

        Raises:
            IssuerRejected: a real request would be refused.
        """
        now = self._check_old_certificate(slot, old_certificate)
        self._check_proof(slot, old_certificate, sign_with_old_key)
        opens = old_certificate.not_valid_after_utc - dt.timedelta(days=self.window_days)
        if opens > now:
            return f"the embedded CA would grant it from {opens:%Y-%m-%d} (not due before); nothing was recorded"
        return "the embedded CA would grant it now; nothing was recorded"

    def _check_old_certificate(self, slot: str, old_certificate: x509.Certificate) -> dt.datetime:
        """The refusal switch, the issuer and the expiry of the certificate being renewed; returns now.

        Raises:
            IssuerRejected: refused, not issued by this CA, or expired.
        """
        if self.refuse_reason:
            raise IssuerRejected(self.refuse_reason)
        try:
            old_certificate.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, Exception) as exc:
            raise IssuerRejected(f"the certificate in slot {slot} was not issued by this CA ({exc.__class__.__name__})") from exc
        now = self._now()
        if old_certificate.not_valid_after_utc <= now:
            raise IssuerRejected(expired(f"in slot {slot}"))
        return now

    def _check_proof(self, slot: str, old_certificate: x509.Certificate, sign_with_old_key: Signer) -> str:
        """The old key signs a fresh nonce; returns the old certificate's fingerprint.

        Raises:
            IssuerRejected: the signature does not verify with the old certificate.
        """
        old_fp = fingerprint(old_certificate)
        nonce = secrets.token_bytes(32)
        signature = sign_with_old_key(proof_message(slot, old_fp, nonce))
        if not verify_signature(old_certificate.public_key(), signature, proof_message(slot, old_fp, nonce)):
            raise IssuerRejected(f"the proof of possession for slot {slot} did not verify with the old certificate")
        return old_fp

    def request_signer_slot(self, slot: str) -> str | None:
        """None: the new key signs its own request (PKCS#10); the grant proves the old key."""
        return None

    def challenge_password(self, grant: RenewalGrant) -> Secret | None:
        """None: the grant, not a password, authorises the request."""
        return None

    def issue(self, grant: RenewalGrant, csr: x509.CertificateSigningRequest, new_key: PublicKeyTypes,
              card_key: CardKey | None = None, *, request_signer: RequestSigner | None = None,
              not_after_limit: dt.datetime | None = None) -> IssuedCertificate:
        """Issue under ``grant`` (see :meth:`card.enrollment.base.Issuer.issue`); the certificate's
        notAfter is never past ``not_after_limit`` (the card's CHUID expiry, FIPS 201-3 §4.1.4.1).
        ``card_key`` and ``request_signer`` are not needed: the CSR is signed by the new key."""
        if self.refuse_reason:
            raise IssuerRejected(self.refuse_reason)
        with self._db() as db:
            row = db.execute(
                "SELECT slot, old_cert, subject, expires, used, public_key, issued FROM grants WHERE grant_id = ?",
                (grant.grant_id,),
            ).fetchone()
        if row is None:
            raise IssuerRejected("unknown renewal grant")
        slot, old_der, subject_der, expires, used, used_key, issued = row
        new_key_der = public_key_der(new_key)
        if used:
            if used_key == new_key_der and issued:
                return IssuedCertificate(x509.load_der_x509_certificate(issued), (self.cert,))
            raise IssuerRejected("this renewal grant has already been used for another key")
        if dt.datetime.fromisoformat(expires) < self._now():
            raise IssuerRejected("the renewal grant has expired")
        if not csr.is_signature_valid:
            raise IssuerRejected("the certificate request's signature does not verify")
        if public_key_der(csr.public_key()) != new_key_der:
            raise IssuerRejected("the certificate request is not for the key generated on the card")
        if csr.subject.public_bytes() != subject_der:
            raise IssuerRejected("the certificate request's subject differs from the certificate being renewed")
        old = load_certificate(old_der)  # the certificate being renewed, negative serial or not
        now = self._now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(old.subject)
            .issuer_name(self.cert.subject)
            .public_key(new_key)  # type: ignore[arg-type]  # PIV keys: RSA or EC
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + dt.timedelta(days=self.validity_days), self.cert.not_valid_after_utc,
                                 *([not_after_limit] if not_after_limit is not None else [])))
        )
        if not_after_limit is not None and not_after_limit <= now:
            raise IssuerRejected("the card itself has expired (CHUID); a certificate may not outlive its card")
        for ext in old.extensions:
            if ext.oid in (x509.ExtensionOID.BASIC_CONSTRAINTS, x509.ExtensionOID.KEY_USAGE,
                           x509.ExtensionOID.EXTENDED_KEY_USAGE, x509.ExtensionOID.SUBJECT_ALTERNATIVE_NAME):
                builder = builder.add_extension(ext.value, ext.critical)
        cert = self._sign(builder, new_key)
        assert key_matches(cert, new_key)
        with self._db() as db:
            cur = db.execute(
                "UPDATE grants SET used = 1, public_key = ?, issued = ? WHERE grant_id = ? AND used = 0",
                (new_key_der, cert.public_bytes(serialization.Encoding.DER), grant.grant_id),
            )
            if cur.rowcount != 1:
                raise IssuerRejected("this renewal grant has already been used")
        return IssuedCertificate(cert, (self.cert,))
