"""PIV names and identifiers (NIST SP 800-73-4 Part 1, SP 800-78-4): the application AID, key
references, object tags, slots, key types and management-key algorithms.

``cryptography`` is imported where it is used, not here: these names are needed by the configuration
and the TUI before its first frame, and importing cryptography costs about 50 ms of a 0.3 s start
(issue 7).
"""

from __future__ import annotations

from enum import IntEnum, unique
from typing import TYPE_CHECKING

from card.apdu import INS
from card.errors import NotSupportedError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

PIV_AID = bytes.fromhex("A000000308000010000100")
"""Full PIV application AID (SP 800-73-4 Part 1 §2.2); SELECT sends the 9-byte prefix."""
PIV_AID_SELECT = PIV_AID[:9]

# The instructions, by the names this module always gave them (the bytes are :class:`card.apdu.INS`).
INS_SELECT = INS.SELECT
INS_CHANGE_REFERENCE = INS.CHANGE_REFERENCE_DATA
INS_RESET_RETRY = INS.RESET_RETRY_COUNTER
INS_GENERATE_ASYMMETRIC = INS.GENERATE_ASYMMETRIC_KEY_PAIR
INS_GET_METADATA = INS.GET_METADATA
"""Yubico extension (YubiKey 5.3+); other cards answer ``6D 00`` (piv-protocol.md §3.2)."""
INS_GET_VERSION = INS.GET_VERSION
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
            TripleDES = algorithms.TripleDES  # type: ignore[misc]  # cryptography < 43: the same class, imported from its old home
        alg = TripleDES(key) if self is ManagementKeyAlgorithm.TDES else algorithms.AES(key)
        return Cipher(alg, modes.ECB())
