"""Encodings of PIV data (SP 800-73-4): PIN reference data, the CHUID, the Application Property
Template's algorithm list, the ``7F49`` public-key template and the PKCS#1 v1.5 signature block."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from card import tlv
from card.errors import BadResponseError, NotSupportedError, PinFormatError
from card.piv.model import KeyType
from card.secret import Secret, require_secret

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

_DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")


def check_pin_format(pin: Secret) -> None:
    """Check a PIN or PUK without sending it: UTF-8 text of 6–8 bytes (SP 800-73-4 Part 2 §3.2.1).

    Raises:
        PinFormatError: not valid text, or fewer than 6 or more than 8 bytes; never truncated (F07).
        TypeError: ``pin`` is not a :class:`~card.secret.Secret`.
    """
    require_secret(pin, "PIN")
    if not pin.is_text:  # e.g. undecodable bytes read from a pipe
        raise PinFormatError("The PIN contains bytes that are not valid text.")
    if not 6 <= len(pin) <= 8:
        raise PinFormatError(f"A PIN is 6 to 8 bytes long (a digit or plain letter is 1 byte, an accented "
                             f"letter 2 or more); this one is {len(pin)} bytes.")


def encode_pin(pin: Secret) -> bytes:
    """PIN reference data: UTF-8, 6–8 bytes, right-padded with ``FF`` to 8 (SP 800-73-4 Part 2 §3.2.1).

    One of the few places that reveal a :class:`~card.secret.Secret`: the block goes straight into
    the VERIFY / CHANGE REFERENCE DATA / RESET RETRY COUNTER APDU (whose trace is redacted).

    Raises:
        PinFormatError: see :func:`check_pin_format`; TypeError: ``pin`` is not a Secret.
    """
    check_pin_format(pin)
    return pin.reveal().ljust(8, b"\xff")


def _fasc_n_9999() -> bytes:
    # Non-federal FASC-N with agency code 9999 (as ykman's generate_chuid): 25 bytes, BCD 5-bit.
    return bytes.fromhex("D4E739DA739CED39CE739D836858210842108421C84210C3EB")


def build_chuid(guid: bytes, expiry: dt.date) -> bytes:
    """Value of the CHUID object (SP 800-73-4 Part 1 Table 9): FASC-N, GUID (16 bytes), expiry, empty signature."""
    if len(guid) != 16:
        raise ValueError("GUID must be 16 bytes")
    return (
        tlv.tlv(0x30, _fasc_n_9999())
        + tlv.tlv(0x34, guid)
        + tlv.tlv(0x35, expiry.strftime("%Y%m%d").encode())
        + tlv.tlv(0x3E, b"")
        + tlv.tlv(0xFE, b"")
    )


@dataclass(frozen=True)
class Chuid:
    """The parts of the CHUID that renewal uses."""

    guid: bytes
    expiry: dt.date | None

    @property
    def guid_hex(self) -> str:
        """The 16-byte GUID (CHUID tag 34, SP 800-73-4 Part 1 Table 9) as 32 upper-case hex digits."""
        return self.guid.hex().upper()

    @property
    def guid_text(self) -> str:
        """GUID as the usual 8-4-4-4-12 text."""
        return str(uuid.UUID(bytes=self.guid)).upper()


def parse_chuid(value: bytes) -> Chuid:
    """Parse the CHUID value. Raises BadResponseError when the GUID (tag 34) is missing or wrong."""
    items = tlv.parse_dict(value)
    guid = items.get(b"\x34")
    if guid is None or len(guid) != 16:
        raise BadResponseError("CHUID has no 16-byte GUID")
    expiry = None
    raw = items.get(b"\x35")
    if raw and len(raw) == 8:
        try:
            expiry = dt.datetime.strptime(raw.decode("ascii"), "%Y%m%d").date()
        except (UnicodeDecodeError, ValueError):
            expiry = None
    return Chuid(guid, expiry)


def parse_supported_key_types(apt: bytes) -> set[KeyType] | None:
    """The asymmetric algorithms a card lists in the Application Property Template that SELECT
    returns (``61 { … AC { 80 <alg> … } }``, SP 800-73-4 Part 2 §3.1.1); None when it lists none.
    Unknown algorithm identifiers are ignored."""
    try:
        listed = tlv.parse_dict(tlv.unwrap(apt, 0x61)).get(b"\xac")
        items = tlv.parse(listed) if listed is not None else None
    except BadResponseError:
        return None
    if items is None:
        return None
    return {KeyType(v[0]) for t, v in items if t == b"\x80" and len(v) == 1 and v[0] in KeyType._value2member_map_}


def parse_public_key(key_type: KeyType, template: bytes) -> PublicKeyTypes:
    """Parse the ``7F49`` public-key template that GENERATE returns (SP 800-73-4 Part 2 §3.3.2,
    Table 11: RSA ``81`` modulus and ``82`` public exponent; EC ``86`` uncompressed point).

    Total: any bytes either give a key of ``key_type`` or raise BadResponseError.

    Raises:
        BadResponseError: truncated or inconsistent template, a modulus that is not 2048 bits, an
            exponent cryptography refuses (even, 1, too large), or a point not on the curve (a card
            can send any of these with ``90 00``).
    """
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    inner = tlv.unwrap(template, b"\x7f\x49")
    items = tlv.parse_dict(inner)
    if key_type.is_rsa:
        n, e = items.get(b"\x81"), items.get(b"\x82")
        if not n or not e or len(n) != 256:
            raise BadResponseError("RSA public key template is incomplete (needs an 81 modulus of 256 bytes and 82)")
        if not n[0] & 0x80:
            raise BadResponseError("RSA public key from the card is not 2048 bits (modulus has a leading zero bit)")
        if not n[-1] & 1:
            raise BadResponseError("RSA modulus from the card is even; refused")
        if len(e) > 8:
            raise BadResponseError(f"RSA public exponent from the card is {len(e)} bytes long; refused")
        try:
            return rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big")).public_key()
        except ValueError as exc:
            raise BadResponseError(f"RSA public key from the card is not valid ({exc})") from exc
    point = items.get(b"\x86")
    curve: ec.EllipticCurve = ec.SECP256R1() if key_type is KeyType.ECCP256 else ec.SECP384R1()
    size = 1 + 2 * key_type.sign_bytes
    if not point or len(point) != size or point[0] != 0x04:
        raise BadResponseError(f"EC public key template is incomplete (needs an 86 point of {size} bytes, 04 …)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except ValueError as exc:
        raise BadResponseError("EC point from the card is not on the curve") from exc


def encode_public_key(key: PublicKeyTypes) -> bytes:
    """The ``7F49`` template for a public key (emulator side of GENERATE)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPublicKey):
        nums = key.public_numbers()
        inner = tlv.tlv(0x81, nums.n.to_bytes(256, "big")) + tlv.tlv(0x82, nums.e.to_bytes(3, "big"))
    elif isinstance(key, ec.EllipticCurvePublicKey):
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        inner = tlv.tlv(0x86, key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
    else:
        raise NotSupportedError("unsupported key")
    return tlv.tlv(b"\x7f\x49", inner)


def pkcs1v15_sha256_block(message: bytes) -> bytes:
    """EMSA-PKCS1-v1_5 block for SHA-256 over ``message`` (RFC 8017 §9.2), 256 bytes for RSA-2048."""
    t = _DIGEST_INFO_SHA256 + hashlib.sha256(message).digest()
    return b"\x00\x01" + b"\xff" * (256 - len(t) - 3) + b"\x00" + t
