"""PIV application commands (NIST SP 800-73-4 Part 2 §3) over an :class:`~card.apdu.ApduProtocol`.

Names follow the spec: slot ``9A`` PIV Authentication, ``9C`` Digital Signature, management
key ``9B``; keys come back as ``cryptography`` public-key objects. Every method is
synchronous and must run on the card worker thread.

The package: :mod:`card.piv.model` (AID, key references, object tags, :class:`Slot`,
:class:`KeyType`, :class:`ManagementKeyAlgorithm`), :mod:`card.piv.encoding` (PIN blocks, CHUID,
public-key templates), :mod:`card.piv.session` (:class:`PivSession`, the commands). The
workarounds for cards that do not follow the spec are in :mod:`card.piv.quirks`.
"""

from card.apdu import (  # importable from here as before
    INS_GENERAL_AUTHENTICATE,
    INS_GET_DATA,
    INS_PUT_DATA,
    INS_VERIFY,
    KEY_REF_MANAGEMENT,
    SW_OK,
    ApduProtocol,
    CommandApdu,
)
from card.piv.encoding import (
    Chuid,
    build_chuid,
    check_pin_format,
    encode_pin,
    encode_public_key,
    parse_chuid,
    parse_public_key,
    parse_supported_key_types,
    pkcs1v15_sha256_block,
)
from card.piv.model import (
    DEFAULT_MANAGEMENT_KEY,
    INS_CHANGE_REFERENCE,
    INS_GENERATE_ASYMMETRIC,
    INS_GET_METADATA,
    INS_GET_VERSION,
    INS_RESET_RETRY,
    INS_SELECT,
    KEY_REF_PIN,
    KEY_REF_PUK,
    OBJECT_CCC,
    OBJECT_CHUID,
    OBJECT_DISCOVERY,
    PIV_AID,
    PIV_AID_SELECT,
    TAG_CHALLENGE,
    TAG_DYNAMIC_AUTH,
    TAG_OBJECT_WRAP,
    TAG_RESPONSE,
    TAG_WITNESS,
    KeyType,
    ManagementKeyAlgorithm,
    Slot,
)
from card.piv.quirks import retries_from_sw
from card.piv.session import PivSession

__all__ = [
    "DEFAULT_MANAGEMENT_KEY", "INS_CHANGE_REFERENCE", "INS_GENERAL_AUTHENTICATE", "INS_GENERATE_ASYMMETRIC",
    "INS_GET_DATA", "INS_GET_METADATA", "INS_GET_VERSION", "INS_PUT_DATA", "INS_RESET_RETRY", "INS_SELECT",
    "INS_VERIFY", "KEY_REF_MANAGEMENT", "KEY_REF_PIN", "KEY_REF_PUK", "OBJECT_CCC", "OBJECT_CHUID",
    "OBJECT_DISCOVERY", "PIV_AID", "PIV_AID_SELECT", "SW_OK", "TAG_CHALLENGE", "TAG_DYNAMIC_AUTH",
    "TAG_OBJECT_WRAP", "TAG_RESPONSE", "TAG_WITNESS", "ApduProtocol", "Chuid", "CommandApdu", "KeyType",
    "ManagementKeyAlgorithm", "PivSession", "Slot", "build_chuid", "check_pin_format", "encode_pin",
    "encode_public_key", "parse_chuid", "parse_public_key", "parse_supported_key_types",
    "pkcs1v15_sha256_block", "retries_from_sw",
]
