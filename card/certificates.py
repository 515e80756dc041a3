"""Host-side X.509 helpers: the PIV certificate object, expiry arithmetic, key matching.

The certificate object is ``53 { 70 <cert>, 71 01 <CertInfo>, FE 00 }``
(SP 800-73-4 Part 1 Appendix A, Table 10; CertInfo bit 0 = gzip per SP 800-73-4 Part 1 §5.1.1).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import hashlib
import warnings
import zlib
from dataclasses import dataclass
from typing import cast

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
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
    if not d.eof:
        raise CertificateObjectError(f"slot holds a compressed certificate that is cut short ({len(body)} bytes)")
    return out


def decode_certificate_object(value: bytes) -> x509.Certificate | None:
    """Decode the value of tag ``53`` of a certificate object (F01, F02, F03, F15).

    Total: any byte string either decodes or raises :class:`CertificateObjectError`.

    Returns:
        The certificate (see :func:`load_certificate`), or None when the object is empty
        (``53 00`` or an empty ``70``).

    Raises:
        CertificateObjectError: junk, undecodable compression, or a non-DER certificate;
            the message says what the slot holds ("unreadable object, N bytes (…)").
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
        return load_certificate(der)
    except CertificateObjectError as exc:
        raise CertificateObjectError(f"unreadable object, {len(value)} bytes ({exc})") from exc


class _UnreadableField(Exception):
    """Internal: one field of a parsed certificate did not decode (the reason is the message)."""


def _touch(cert: x509.Certificate) -> None:
    """Decode every field the app reads, so that a certificate handed out is safe to use anywhere
    (cryptography decodes names and extensions only when they are first read)."""
    checks = (
        ("the subject name", lambda: cert.subject.rfc4514_string()),
        ("the issuer name", lambda: cert.issuer.rfc4514_string()),
        ("the validity dates", lambda: (cert.not_valid_before_utc, cert.not_valid_after_utc)),
        ("an extension", lambda: list(cert.extensions)),
        ("the public key", cert.public_key),
    )
    for what, read in checks:
        try:
            read()
        except (ValueError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension,
                x509.UnsupportedGeneralNameType) as exc:
            raise _UnreadableField(f"{what} does not decode") from exc


def _short(exc: BaseException) -> str:
    """Why a DER structure did not parse, in words a person can pass on (cryptography's parse
    errors are Rust debug strings; their text stays in the exception chain for the log)."""
    text = (str(exc).splitlines() or [""])[0]
    if not text or text.startswith("error parsing asn1 value") or len(text) > 120:
        return "the DER encoding does not parse"
    return text


def load_certificate(der: bytes) -> x509.Certificate:
    """Parse one DER X.509 certificate (RFC 5280 §4.1) read from a card, completely.

    Every field the app reads (names, validity, extensions, public key) is decoded here, so a
    certificate this returns never raises later. A certificate whose serial number is negative or
    zero (RFC 5280 §4.1.2.2 forbids both, but old CAs issued them and OpenSSL and OpenSC accept
    them) is returned as a :class:`NonPositiveSerialCertificate`, which behaves like an
    ``x509.Certificate`` whatever the installed cryptography thinks of such serials.

    Raises:
        CertificateObjectError: not a DER certificate, or a field that does not decode (the
            message names the field).
    """
    serial = _asn1_serial(der)
    if serial is not None and serial <= 0:
        # Duck-typed: it answers what x509.Certificate answers (the Rust class cannot be subclassed).
        return cast("x509.Certificate", NonPositiveSerialCertificate(der))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is not a ValueError
        raise CertificateObjectError(f"not an X.509 certificate: {_short(exc)}") from exc
    if cert.serial_number <= 0:  # cryptography read a serial that asn1crypto could not: refuse both
        raise CertificateObjectError("not an X.509 certificate: the serial number does not decode")
    try:
        _touch(cert)
    except _UnreadableField as exc:
        raise CertificateObjectError(f"not an X.509 certificate: {exc}") from exc
    return cert


def load_certificate_pem(pem: bytes | str) -> x509.Certificate:
    """:func:`load_certificate` for one PEM certificate (as the journal keeps them).

    Raises:
        CertificateObjectError: no PEM certificate block, or its DER does not parse.
    """
    text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise CertificateObjectError("not a PEM certificate")
    try:
        der = base64.b64decode("".join(text[start + len(begin):stop].split()), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise CertificateObjectError("not a PEM certificate: bad base64") from exc
    return load_certificate(der)


def _asn1_serial(der: bytes) -> int | None:
    """The serial number as asn1crypto reads it, or None when asn1crypto cannot read it."""
    try:
        parsed = asn1_x509.Certificate.load(der, strict=True)
        serial = parsed["tbs_certificate"]["serial_number"].native
    except Exception:  # noqa: BLE001 - asn1crypto raises ValueError, TypeError, … on junk; then cryptography decides
        return None
    return serial if isinstance(serial, int) else None


class NonPositiveSerialCertificate:
    """A certificate whose serial number is negative or zero (RFC 5280 §4.1.2.2 forbids it; old
    CAs issued such certificates and OpenSSL and OpenSC read them). It is shown with a note and
    renewed like any other.

    It answers what ``x509.Certificate`` answers. ``serial_number``, ``public_bytes``,
    ``tbs_certificate_bytes``, ``fingerprint`` and ``verify_directly_issued_by`` use the
    certificate's own bytes; names, validity, extensions and the public key come from a copy
    whose serial is made positive, which cryptography parses in every version (recent versions
    only warn about such serials, later ones may refuse them).

    Raises (constructor):
        CertificateObjectError: the certificate does not parse.
    """

    def __init__(self, der: bytes) -> None:
        try:
            parsed = asn1_x509.Certificate.load(der, strict=True)
            tbs = parsed["tbs_certificate"]
            serial = tbs["serial_number"].native
            tbs_der: bytes = tbs.dump()
            signature: bytes = parsed["signature_value"].native
            positive = tbs.copy()
            positive["serial_number"] = int.from_bytes(tbs["serial_number"].contents, "big") or 1
            copy = asn1_x509.Certificate({"tbs_certificate": positive,
                                          "signature_algorithm": parsed["signature_algorithm"],
                                          "signature_value": parsed["signature_value"]}).dump(force=False)
        except Exception as exc:  # noqa: BLE001 - asn1crypto's errors on junk vary
            raise CertificateObjectError(f"not an X.509 certificate: {_short(exc)}") from exc
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                view = x509.load_der_x509_certificate(copy)
            _touch(view)
        except (ValueError, x509.InvalidVersion, _UnreadableField) as exc:
            raise CertificateObjectError(f"not an X.509 certificate: {_short(exc)}") from exc
        self._der = bytes(der)
        self._serial: int = serial
        self._tbs = tbs_der
        self._signature: bytes = signature
        self._view = view

    # -- what differs from the positive-serial copy -------------------------------------------
    @property
    def serial_number(self) -> int:
        """The serial as the certificate holds it (negative or zero)."""
        return self._serial

    def public_bytes(self, encoding: serialization.Encoding) -> bytes:
        """The certificate's own DER, or PEM of it."""
        if encoding is serialization.Encoding.DER:
            return self._der
        if encoding is serialization.Encoding.PEM:
            body = base64.encodebytes(self._der).replace(b"\n", b"")
            lines = [body[i:i + 64] for i in range(0, len(body), 64)]
            return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"
        raise ValueError("encoding must be DER or PEM")

    @property
    def tbs_certificate_bytes(self) -> bytes:
        return self._tbs

    @property
    def signature(self) -> bytes:
        return self._signature

    def fingerprint(self, algorithm: hashes.HashAlgorithm) -> bytes:
        digest = hashes.Hash(algorithm)
        digest.update(self._der)
        return digest.finalize()

    def verify_directly_issued_by(self, issuer: x509.Certificate) -> None:
        """As ``x509.Certificate.verify_directly_issued_by``, over this certificate's own bytes.

        Raises:
            ValueError: the issuer name does not match; InvalidSignature: the signature does not verify.
        """
        if self._view.issuer != issuer.subject:
            raise ValueError("issuer name does not match the issuer certificate's subject")
        key = issuer.public_key()
        params = self._view.signature_algorithm_parameters
        algorithm = self._view.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey) and isinstance(params, (padding.PKCS1v15, padding.PSS)) and algorithm:
            key.verify(self._signature, self._tbs, params, algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
            key.verify(self._signature, self._tbs, params)
        else:
            raise ValueError("unsupported issuer key or signature algorithm")

    # -- everything else is the same in the copy --------------------------------------------
    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):  # copy/pickle look for dunders before __init__ ran
            raise AttributeError(name)
        return getattr(self._view, name)

    def __eq__(self, other: object) -> bool:
        return hasattr(other, "public_bytes") and other.public_bytes(serialization.Encoding.DER) == self._der

    def __hash__(self) -> int:
        return hash(self._der)

    def __repr__(self) -> str:
        return f"<NonPositiveSerialCertificate(subject={self._view.subject}, serial={self._serial})>"


def serial_note(cert: x509.Certificate) -> str | None:
    """A note for a certificate whose serial number is negative or zero, else None."""
    if cert.serial_number > 0:
        return None
    kind = "negative" if cert.serial_number < 0 else "zero"
    return (f"this certificate has a {kind} serial number, which RFC 5280 §4.1.2.2 forbids (older CAs issued "
            "such certificates); it works, and renewing it replaces it with a certificate with a valid serial")


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
    """Calendar days from ``now``'s date to notAfter's date, both in UTC: the expiry date every view
    shows (``YYYY-MM-DD`` of ``not_valid_after_utc``), so two certificates expiring the same day show
    the same number, whatever their time of day (tester F-7: 730 and 731 beside one date). A
    certificate issued "for 30 days" shows 30; 0 on its last day; negative once that day has passed."""
    return (cert.not_valid_after_utc.date() - now.astimezone(dt.timezone.utc).date()).days


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
    note: str | None = None
    """Something the holder should know about a readable certificate (a negative serial number)."""
