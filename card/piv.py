"""PIV application commands (NIST SP 800-73-4 Part 2 §3) over an :class:`ApduProtocol`.

Names follow the spec: slot ``9A`` PIV Authentication, ``9C`` Digital Signature, management
key ``9B``; keys come back as ``cryptography`` public-key objects. Every method is
synchronous and must run on the card worker thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import uuid
from dataclasses import dataclass
from enum import IntEnum, unique
from typing import TYPE_CHECKING

from card import tlv
from card.apdu import (  # the instructions the APDU trace must know about are defined there
    INS_GENERAL_AUTHENTICATE,
    INS_GET_DATA,
    INS_PUT_DATA,
    INS_VERIFY,
    KEY_REF_MANAGEMENT,
    SW_OK,
    ApduProtocol,
    CommandApdu,
)
from card.errors import (
    ApduError,
    BadResponseError,
    CertificateObjectError,
    InvalidPinError,
    ManagementKeyError,
    NotSupportedError,
    PinBlockedError,
    PinFormatError,
)
from card.secret import Secret, require_secret
from card.transport import CardTransport

# ``cryptography`` (and card.certificates, which needs it) is imported where it is used, not here:
# the names below (Slot, KeyType, ManagementKeyAlgorithm, …) are needed by the configuration and the
# TUI before its first frame, and importing cryptography costs about 50 ms of a 0.3 s start (issue 7).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    from card.certificates import SlotCertificate

PIV_AID = bytes.fromhex("A000000308000010000100")
"""Full PIV application AID (SP 800-73-4 Part 1 §2.2); SELECT sends the 9-byte prefix."""
PIV_AID_SELECT = PIV_AID[:9]

INS_SELECT = 0xA4
INS_CHANGE_REFERENCE = 0x24
INS_RESET_RETRY = 0x2C
INS_GENERATE_ASYMMETRIC = 0x47
INS_GET_METADATA = 0xF7
"""Yubico extension (YubiKey 5.3+); other cards answer ``6D 00`` (piv-protocol.md §3.2)."""
INS_GET_VERSION = 0xFD
"""Yubico extension: 3-byte firmware version; other cards answer ``6D 00``."""

KEY_REF_PIN = 0x80
KEY_REF_PUK = 0x81

TAG_DYNAMIC_AUTH = 0x7C
TAG_WITNESS = 0x80
TAG_CHALLENGE = 0x81
TAG_RESPONSE = 0x82
TAG_OBJECT_WRAP = b"\x53"

DEFAULT_MANAGEMENT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")
"""The well-known factory management key. Only ever used where configuration allows it."""

OBJECT_CHUID = b"\x5f\xc1\x02"
OBJECT_CCC = b"\x5f\xc1\x07"
OBJECT_DISCOVERY = b"\x7e"

_DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")


@unique
class Slot(IntEnum):
    """PIV key references (SP 800-73-4 Part 1 Table 4b) with their certificate objects."""

    AUTHENTICATION = 0x9A
    SIGNATURE = 0x9C
    KEY_MANAGEMENT = 0x9D
    CARD_AUTH = 0x9E

    @property
    def object_id(self) -> bytes:
        """BER-TLV tag of the slot's certificate object (SP 800-73-4 Part 1 Table 3)."""
        return {0x9A: b"\x5f\xc1\x05", 0x9C: b"\x5f\xc1\x0a", 0x9D: b"\x5f\xc1\x0b", 0x9E: b"\x5f\xc1\x01"}[self]

    @property
    def hex(self) -> str:
        """The slot as the field writes it, e.g. ``"9A"``."""
        return f"{self.value:02X}"

    @classmethod
    def parse(cls, text: str) -> Slot:
        """Parse ``"9A"`` / ``"9a"`` / ``"0x9a"``. Raises ValueError for other slots."""
        return cls(int(text.lower().removeprefix("0x"), 16))


@unique
class KeyType(IntEnum):
    """Asymmetric algorithm identifiers (SP 800-78-4 Table 6-2)."""

    RSA2048 = 0x07
    ECCP256 = 0x11
    ECCP384 = 0x14

    @classmethod
    def of(cls, key: PublicKeyTypes) -> KeyType:
        """The key type of a public key. Raises NotSupportedError for others."""
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        if isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048:
            return cls.RSA2048
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            return cls.ECCP256
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1):
            return cls.ECCP384
        raise NotSupportedError(f"key type not supported: {type(key).__name__}")

    @property
    def is_rsa(self) -> bool:
        """True for RSA key types (host-side PKCS#1 v1.5 padding, raw RSA on the card, SP 800-73-4 Part 2 §3.2.4)."""
        return self is KeyType.RSA2048

    @property
    def sign_bytes(self) -> int:
        """Input block size of a signature: modulus bytes (RSA) or field bytes (EC)."""
        return {KeyType.RSA2048: 256, KeyType.ECCP256: 32, KeyType.ECCP384: 48}[self]


@unique
class ManagementKeyAlgorithm(IntEnum):
    """Management-key (``9B``) algorithm identifiers (SP 800-78-4 Table 6-1)."""

    TDES = 0x03
    AES128 = 0x08
    AES192 = 0x0A
    AES256 = 0x0C

    @property
    def key_bytes(self) -> int:
        """Key length in bytes: 24 (3DES, AES-192), 16 (AES-128), 32 (AES-256) (SP 800-78-4 Table 6-1)."""
        return {0x03: 24, 0x08: 16, 0x0A: 24, 0x0C: 32}[self.value]

    @property
    def block_bytes(self) -> int:
        """Witness/challenge block in bytes: 8 for 3DES, 16 for AES (SP 800-73-4 Part 2 Appendix A.1)."""
        return 8 if self is ManagementKeyAlgorithm.TDES else 16

    def cipher(self, key: bytes) -> Cipher[modes.ECB]:
        """ECB cipher for the challenge/response blocks. Raises ValueError on a wrong key length."""
        if len(key) != self.key_bytes:
            raise ValueError(f"{self.name} management key must be {self.key_bytes} bytes, got {len(key)}")
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        try:  # cryptography ≥ 43 keeps 3DES in the "decrepit" module
            from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
        except ImportError:  # pragma: no cover - older cryptography
            TripleDES = algorithms.TripleDES  # type: ignore[misc,assignment]
        alg = TripleDES(key) if self is ManagementKeyAlgorithm.TDES else algorithms.AES(key)
        return Cipher(alg, modes.ECB())


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


def retries_from_sw(sw: int) -> int | None:
    """Tries left from ``63 CX`` (standard) or ``63 0X`` (old YubiKey NEO); None if not such an SW."""
    if sw & 0xFFF0 == 0x63C0:
        return sw & 0x0F
    if sw & 0xFFF0 == 0x6300 and sw != 0x6300:
        return sw & 0x0F
    if sw == 0x6300:
        return 0
    return None


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


class PivSession:
    """A PIV application session on one card.

    Args:
        transport: the card connection; this session does not close it.
    """

    def __init__(self, transport: CardTransport) -> None:
        self.transport = transport
        self.protocol = ApduProtocol(transport)

    # -- plumbing -----------------------------------------------------------------------
    def _send(self, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = 0) -> tuple[bytes, int]:
        return self.protocol.send(CommandApdu(0x00, ins, p1, p2, data, le))

    def _send_ok(self, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = 0) -> bytes:
        resp, sw = self._send(ins, p1, p2, data, le)
        if sw != SW_OK:
            raise ApduError(sw)
        return resp

    # -- application ----------------------------------------------------------------------
    def select(self) -> bytes:
        """SELECT the PIV application (SP 800-73-4 Part 2 §3.1.1). Returns the APT bytes.

        Raises:
            ApduError: ``6A 82`` when the card has no PIV application.
        """
        return self._send_ok(INS_SELECT, 0x04, 0x00, PIV_AID_SELECT)

    def get_data(self, object_id: bytes) -> bytes | None:
        """GET DATA of one object (SP 800-73-4 Part 2 §3.1.2); returns the value inside ``53``.

        Returns:
            The object value (bytes), or None when the card answers ``6A 82`` (no such object).

        Raises:
            ApduError: any other status; BadResponseError: the answer is not a ``53`` TLV.
        """
        resp, sw = self._send(INS_GET_DATA, 0x3F, 0xFF, tlv.tlv(0x5C, object_id))
        if sw == 0x6A82:
            return None
        if sw != SW_OK:
            raise ApduError(sw)
        wrap = b"\x7e" if object_id == OBJECT_DISCOVERY else TAG_OBJECT_WRAP
        return tlv.unwrap(resp, wrap)

    def put_data(self, object_id: bytes, value: bytes) -> None:
        """PUT DATA (SP 800-73-4 Part 2 §3.3.1); needs the management key. ``value`` goes inside ``53``.

        Raises:
            ApduError: ``6A 84`` not enough memory (certificate too large), ``69 82`` not authenticated.
        """
        self._send_ok(INS_PUT_DATA, 0x3F, 0xFF, tlv.tlv(0x5C, object_id) + tlv.tlv(TAG_OBJECT_WRAP, value), le=None)

    def read_chuid(self) -> Chuid | None:
        """Read and parse the CHUID; None if the card has none."""
        value = self.get_data(OBJECT_CHUID)
        return parse_chuid(value) if value is not None else None

    def read_certificate(self, slot: Slot) -> SlotCertificate:
        """Read one slot's certificate object; a broken slot yields an error text, never an exception (F15)."""
        from card.certificates import SlotCertificate, decode_certificate_object, serial_note

        try:
            value = self.get_data(slot.object_id)
        except (ApduError, BadResponseError) as exc:
            return SlotCertificate(None, f"could not read the certificate object ({exc})")
        if value is None:
            return SlotCertificate(None, None, 0)
        try:
            cert = decode_certificate_object(value)
        except CertificateObjectError as exc:
            return SlotCertificate(None, str(exc), len(value))
        return SlotCertificate(cert, None, len(value), serial_note(cert) if cert is not None else None)

    def put_certificate(self, slot: Slot, der: bytes, *, compress: bool = False) -> None:
        """Write a DER certificate into the slot's object (``70``/``71``/``FE``). Needs the management key."""
        from card.certificates import encode_certificate_object

        self.put_data(slot.object_id, encode_certificate_object(der, compress=compress))

    # -- PIN ---------------------------------------------------------------------------------
    def get_pin_retries(self) -> int | None:
        """Tries left for the PIV PIN without spending one (empty VERIFY, SP 800-73-4 Part 2 §3.2.1).

        Returns:
            The count, or None when the PIN is currently verified (``90 00``).

        Raises:
            PinBlockedError: ``69 83``.
        """
        _, sw = self._send(INS_VERIFY, 0x00, KEY_REF_PIN, le=None)
        if sw == SW_OK:
            return None
        if sw == 0x6983:
            raise PinBlockedError("The PIN is blocked.")
        retries = retries_from_sw(sw)
        if retries is None:
            raise ApduError(sw)
        return retries

    def verify_pin(self, pin: Secret) -> None:
        """VERIFY the PIV PIN (key reference ``80``). The PIN is never logged; the caller wipes it.

        Raises:
            PinFormatError: not 6–8 bytes (no APDU sent, no try used).
            InvalidPinError: ``63 CX``, with ``attempts_remaining``.
            PinBlockedError: ``69 83``.
        """
        block = encode_pin(pin)
        _, sw = self._send(INS_VERIFY, 0x00, KEY_REF_PIN, block, le=None)
        if sw == SW_OK:
            return
        if sw == 0x6983:
            raise PinBlockedError("The PIN is blocked.")
        retries = retries_from_sw(sw)
        if retries is not None:
            if retries == 0:
                raise PinBlockedError("The PIN is blocked.")
            raise InvalidPinError(retries)
        raise ApduError(sw)

    def change_pin(self, old: Secret, new: Secret) -> None:
        """CHANGE REFERENCE DATA for the PIV PIN (SP 800-73-4 Part 2 §3.2.2). Neither PIN is logged.

        Sends ``00 24 00 80 10`` + the old PIN block (8 bytes) + the new PIN block (8 bytes),
        each made by :func:`encode_pin` (UTF-8, right-padded with ``FF``).

        Raises:
            PinFormatError: either PIN is not 6–8 bytes (no APDU sent, no try used).
            InvalidPinError: ``63 CX``, the old PIN was wrong, with ``attempts_remaining``.
            PinBlockedError: ``69 83`` (or ``63 C0``).
        """
        self._change_reference_data(KEY_REF_PIN, encode_pin(old) + encode_pin(new), INS_CHANGE_REFERENCE)

    def reset_retry(self, puk: Secret, new_pin: Secret) -> None:
        """RESET RETRY COUNTER: unblock the PIN with the PUK and set ``new_pin`` (SP 800-73-4 Part 2 §3.2.3).

        Sends ``00 2C 00 80 10`` + the PUK block (8 bytes) + the new PIN block (8 bytes), each
        made by :func:`encode_pin`. Neither value is logged.

        Raises:
            PinFormatError: the PUK or the new PIN is not 6–8 bytes (no APDU sent).
            InvalidPinError: ``63 CX``, the PUK was wrong, with ``attempts_remaining`` (PUK tries).
            PinBlockedError: ``69 83`` (or ``63 C0``): the PUK is blocked.
        """
        self._change_reference_data(KEY_REF_PIN, encode_pin(puk) + encode_pin(new_pin), INS_RESET_RETRY)

    def _change_reference_data(self, key_ref: int, data: bytes, ins: int) -> None:
        _, sw = self._send(ins, 0x00, key_ref, data, le=None)
        if sw == SW_OK:
            return
        if sw == 0x6983:
            raise PinBlockedError("The PUK is blocked." if ins == INS_RESET_RETRY else "The PIN is blocked.")
        retries = retries_from_sw(sw)
        if retries is not None:
            if retries == 0:
                raise PinBlockedError("The PUK is blocked." if ins == INS_RESET_RETRY else "The PIN is blocked.")
            raise InvalidPinError(retries)
        raise ApduError(sw)

    # -- Yubico extensions -------------------------------------------------------------------
    def get_tries_left(self, reference: int = KEY_REF_PIN) -> int | None:
        """Tries left for the PIN (``80``) or the PUK (``81``) from GET METADATA (Yubico
        ``00 F7 00 80``/``81``, piv-protocol.md §3.2: tag ``06`` = total, left). Spends no try and
        answers even while the PIN is verified (an empty VERIFY then only says ``90 00``).

        Returns:
            The count (0: blocked), or None when the card does not answer metadata (any status
            other than ``90 00``, or no tag ``06``).

        Raises:
            CardRemovedError / transport errors only.
        """
        resp, sw = self._send(INS_GET_METADATA, 0x00, reference)
        if sw != SW_OK:
            return None
        try:
            retries = tlv.parse_dict(resp).get(b"\x06")
        except Exception:  # noqa: BLE001 - malformed metadata: as if the card had none
            return None
        return retries[1] if retries is not None and len(retries) == 2 else None

    def get_version(self) -> tuple[int, int, int] | None:
        """GET VERSION (Yubico ``00 FD 00 00``, piv-protocol.md §3.2): firmware major, minor, patch.

        Returns:
            The 3-byte version, or None when the card does not implement the command
            (``6D 00``, ``6E 00``, ``6A 81``) or answers something other than 3 bytes.

        Raises:
            CardRemovedError / transport errors only; no status word raises.
        """
        resp, sw = self._send(INS_GET_VERSION, 0x00, 0x00)
        if sw != SW_OK or len(resp) != 3:
            return None
        return resp[0], resp[1], resp[2]

    def get_management_key_algorithm(self) -> ManagementKeyAlgorithm | None:
        """The ``9B`` key's algorithm from GET METADATA (Yubico ``00 F7 00 9B``, piv-protocol.md §3.2, F14).

        Returns:
            The algorithm of tag ``01``; TDES when the metadata has no tag ``01`` (older firmware);
            None when the card does not answer metadata (``6D 00`` and any other non-``90 00``
            status): then the configured algorithm applies.

        Raises:
            BadResponseError: ``90 00`` with malformed TLV or an unknown algorithm byte.
        """
        resp, sw = self._send(INS_GET_METADATA, 0x00, KEY_REF_MANAGEMENT)
        if sw != SW_OK:
            return None
        items = tlv.parse_dict(resp)
        alg = items.get(b"\x01")
        if alg is None:
            return ManagementKeyAlgorithm.TDES
        if len(alg) != 1:
            raise BadResponseError("management key metadata: algorithm (tag 01) must be 1 byte")
        try:
            return ManagementKeyAlgorithm(alg[0])
        except ValueError:
            raise BadResponseError(f"management key metadata: unknown algorithm {alg[0]:02X}") from None

    # -- management key ----------------------------------------------------------------------
    def authenticate(self, key: Secret, algorithm: ManagementKeyAlgorithm = ManagementKeyAlgorithm.TDES) -> None:
        """Mutual authentication with the card management key ``9B`` (SP 800-73-4 Part 2 §3.2.4, Appendix A.1).

        Args:
            key: the management key (24 bytes for 3DES/AES-192, 16 AES-128, 32 AES-256) as a
                :class:`~card.secret.Secret` (revealed only to build the cipher; the caller wipes it).
            algorithm: P1, ``03`` 3DES (8-byte blocks), ``08``/``0A``/``0C`` AES-128/192/256 (16-byte blocks).

        Raises:
            TypeError: ``key`` is not a Secret.
            ManagementKeyError: wrong key, a key length that does not fit ``algorithm``, or
                ``6A 80``/``6A 86`` (algorithm does not match, F14).
        """
        block = algorithm.block_bytes
        require_secret(key, "management key")
        try:
            cipher = algorithm.cipher(key.reveal())
        except ValueError as exc:
            raise ManagementKeyError(f"the management key does not fit {algorithm.name}: {exc}") from None
        resp, sw = self._send(INS_GENERAL_AUTHENTICATE, algorithm, KEY_REF_MANAGEMENT,
                              tlv.tlv(TAG_DYNAMIC_AUTH, tlv.tlv(TAG_WITNESS, b"")))
        if sw in (0x6A80, 0x6A86):
            raise ManagementKeyError(f"the card's management key is not {algorithm.name} (SW {sw:04X})")
        if sw != SW_OK:
            raise ManagementKeyError(f"management key authentication failed (SW {sw:04X})")
        witness_enc = tlv.parse_dict(tlv.unwrap(resp, TAG_DYNAMIC_AUTH)).get(bytes([TAG_WITNESS]))
        if not witness_enc or len(witness_enc) != block:
            raise BadResponseError("management key witness has the wrong length")
        dec = cipher.decryptor()
        witness = dec.update(witness_enc) + dec.finalize()
        challenge = os.urandom(block)
        data = tlv.tlv(TAG_DYNAMIC_AUTH, tlv.tlv(TAG_WITNESS, witness) + tlv.tlv(TAG_CHALLENGE, challenge))
        resp, sw = self._send(INS_GENERAL_AUTHENTICATE, algorithm, KEY_REF_MANAGEMENT, data)
        if sw != SW_OK:
            raise ManagementKeyError("the card management key was not accepted")
        answer = tlv.parse_dict(tlv.unwrap(resp, TAG_DYNAMIC_AUTH)).get(bytes([TAG_RESPONSE]))
        enc = cipher.encryptor()
        if answer != enc.update(challenge) + enc.finalize():
            raise ManagementKeyError("the card did not prove knowledge of the management key")

    # -- keys --------------------------------------------------------------------------------
    def generate_key(self, slot: Slot, key_type: KeyType) -> PublicKeyTypes:
        """GENERATE ASYMMETRIC KEY PAIR (SP 800-73-4 Part 2 §3.3.2). Destroys the slot's old key.

        Needs the management key. Returns the new public key.

        Raises:
            NotSupportedError: ``6A 80``/``6A 86`` (the card cannot generate this algorithm, F13).
            BadResponseError: truncated ``7F49`` template.
        """
        data = tlv.tlv(0xAC, tlv.tlv(0x80, bytes([key_type])))
        resp, sw = self._send(INS_GENERATE_ASYMMETRIC, 0x00, slot, data)
        if sw in (0x6A80, 0x6A86):
            raise NotSupportedError(f"this card cannot generate {key_type.name} keys in slot {slot.hex}; nothing was changed")
        if sw != SW_OK:
            raise ApduError(sw)
        return parse_public_key(key_type, resp)

    def sign(self, slot: Slot, key_type: KeyType, message: bytes) -> bytes:
        """Sign ``message`` with the slot's private key, SHA-256 (SP 800-73-4 Part 2 §3.2.4).

        RSA: PKCS#1 v1.5 padding is done here and the card does the raw operation; EC: the card
        gets the digest truncated to the field size and returns a DER ECDSA signature, kept as is (F11).
        Needs the PIN (for ``9C``, VERIFY immediately before, F08).

        Returns:
            The signature bytes (RSA: 256 bytes; EC: DER SEQUENCE{r, s}).

        Raises:
            ApduError: ``69 82`` when the PIN is not verified (F10).
        """
        if key_type.is_rsa:
            block = pkcs1v15_sha256_block(message)
        else:
            block = hashlib.sha256(message).digest()[: key_type.sign_bytes]
            block = block.rjust(key_type.sign_bytes, b"\x00")
        return self._private_key_operation(slot, key_type, block)

    def rsa_decipher(self, slot: Slot, block: bytes) -> bytes:
        """Raw RSA private-key operation on a 256-byte block (key transport, SP 800-73-4 Part 2
        §3.2.4 with tag 81): the caller removes the PKCS#1 v1.5 type-2 padding. Needs the PIN.

        Raises:
            ApduError: ``69 82`` PIN not verified; ``6A 80`` wrong block size or not an RSA key.
        """
        return self._private_key_operation(slot, KeyType.RSA2048, block)

    def _private_key_operation(self, slot: Slot, key_type: KeyType, block: bytes) -> bytes:
        data = tlv.tlv(TAG_DYNAMIC_AUTH, tlv.tlv(TAG_RESPONSE, b"") + tlv.tlv(TAG_CHALLENGE, block))
        resp, sw = self._send(INS_GENERAL_AUTHENTICATE, key_type, slot, data)
        if sw == 0x6982:
            raise ApduError(sw, f"slot {slot.hex}: private-key operation refused, PIN not verified (SW 6982)")
        if sw != SW_OK:
            raise ApduError(sw)
        result = tlv.parse_dict(tlv.unwrap(resp, TAG_DYNAMIC_AUTH)).get(bytes([TAG_RESPONSE]))
        if not result:
            raise BadResponseError("GENERAL AUTHENTICATE response has no tag 82")
        return result
