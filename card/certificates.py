"""Host-side X.509 helpers: the PIV certificate object, expiry arithmetic, key matching.

The certificate object is ``53 { 70 <cert>, 71 01 <CertInfo>, FE 00 }``
(SP 800-73-4 Part 1 Appendix A, Table 10; CertInfo bit 0 = gzip per SP 800-73-4 Part 1 §5.1.1).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import math
import warnings
import zlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from card import tlv
from card.errors import BadResponseError, CertificateObjectError, CertificateTooLargeError

MAX_DECOMPRESSED_BYTES = 65536
"""Cap on an inflated certificate (F01: stop zip bombs)."""

TAG_CERTIFICATE = b"\x70"
TAG_CERTINFO = b"\x71"
TAG_ERROR_DETECTION = b"\xfe"


def encode_certificate_object(der: bytes, *, compress: bool = False) -> bytes:
    """Build the value of tag ``53`` for a certificate (DER bytes); gzip it when ``compress``."""
    if compress:
        body = gzip.compress(der, mtime=0)
        info = b"\x01"
    else:
        body, info = der, b"\x00"
    return tlv.tlv(TAG_CERTIFICATE, body) + tlv.tlv(TAG_CERTINFO, info) + tlv.tlv(TAG_ERROR_DETECTION, b"")


def fit_certificate_object(der: bytes, max_certificate_bytes: int) -> bytes:
    """The ``53`` value to write for ``der`` on a card that stores certificates of up to
    ``max_certificate_bytes`` bytes (YubiKey 3052, SP 800-73 1856): uncompressed when it fits,
    else gzip (CertInfo ``01``) when that fits (issue 3: "write uncompressed unless it does not fit").

    Raises:
        CertificateTooLargeError: neither form fits (F05); the message gives both sizes.
    """
    if len(der) <= max_certificate_bytes:
        return encode_certificate_object(der)
    packed = gzip.compress(der, mtime=0)
    if len(packed) <= max_certificate_bytes:
        return encode_certificate_object(der, compress=True)
    raise CertificateTooLargeError(
        f"certificate too large for this card: {len(der)} bytes ({len(packed)} compressed), "
        f"the card stores at most {max_certificate_bytes}")


def _inflate(body: bytes) -> bytes:
    try:
        if body[:2] == b"\x1f\x8b":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif body[:2] == b"\x01\x00" and len(body) > 4:  # "Net iD": 01 00, LE length, zlib
            body = body[4:]
            d = zlib.decompressobj()
        else:
            d = zlib.decompressobj()
        out = d.decompress(body, MAX_DECOMPRESSED_BYTES + 1)
    except zlib.error as exc:
        raise CertificateObjectError(f"slot holds a compressed certificate that could not be decoded ({exc})") from exc
    if len(out) > MAX_DECOMPRESSED_BYTES:
        raise CertificateObjectError("compressed certificate inflates beyond 64 KiB; refused")
    return out


def decode_certificate_object(value: bytes) -> x509.Certificate | None:
    """Decode the value of tag ``53`` of a certificate object (F01, F02, F03, F15).

    Returns:
        The certificate, or None when the object is empty (``53 00`` or an empty ``70``).

    Raises:
        CertificateObjectError: junk, undecodable compression, or a non-DER certificate;
            the message says what the slot holds ("unreadable object, N bytes").
    """
    if not value:
        return None
    try:
        items = tlv.parse_dict(value)
    except BadResponseError as exc:
        raise CertificateObjectError(f"unreadable object, {len(value)} bytes ({exc})") from exc
    body = items.get(TAG_CERTIFICATE)
    if body is None:
        raise CertificateObjectError(f"unreadable object, {len(value)} bytes (no certificate tag 70)")
    if not body:
        return None
    info = items.get(TAG_CERTINFO, b"\x00")
    compressed = bool(info and (info[0] & 0x81)) or body[:2] == b"\x1f\x8b"
    der = _inflate(body) if compressed else body
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a negative serial only warns today; we report it below
            cert = x509.load_der_x509_certificate(der)
        if cert.serial_number <= 0:
            raise CertificateObjectError(
                f"the certificate has a {'negative' if cert.serial_number < 0 else 'zero'} serial number, "
                "which RFC 5280 §4.1.2.2 forbids; it must be re-issued")
        return cert
    except ValueError as exc:
        raise CertificateObjectError(f"unreadable object, {len(value)} bytes (not an X.509 certificate)") from exc


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, lower-case hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def public_key_der(key: PublicKeyTypes) -> bytes:
    """SubjectPublicKeyInfo DER of a public key (used to compare keys byte for byte)."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(cert: x509.Certificate, key: PublicKeyTypes) -> bool:
    """True when the certificate's SubjectPublicKeyInfo equals ``key`` (F12)."""
    return public_key_der(cert.public_key()) == public_key_der(key)


def days_left(cert: x509.Certificate, now: dt.datetime) -> int:
    """Days from ``now`` (aware UTC) until notAfter, counting a started day as a day
    (a certificate issued "for 30 days" shows 30, not 29); 0 or negative once expired."""
    seconds = (cert.not_valid_after_utc - now).total_seconds()
    return math.ceil(seconds / 86400) if seconds > 0 else math.floor(seconds / 86400)


def holder_name(cert: x509.Certificate) -> str:
    """The subject's common name, or the whole subject when it has none (F16: kept as text)."""
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if cns:
        value = cns[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return cert.subject.rfc4514_string()


def verify_signature(key: PublicKeyTypes, signature: bytes, message: bytes) -> bool:
    """Verify a SHA-256 signature (PKCS#1 v1.5 for RSA, DER ECDSA for EC). Returns a bool."""
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except Exception:  # cryptography raises InvalidSignature, or ValueError on bad DER
        return False
    return True


@dataclass(frozen=True)
class SlotCertificate:
    """What a slot's certificate object holds: a certificate, nothing, or an error text."""

    certificate: x509.Certificate | None
    error: str | None = None
    object_bytes: int = 0
