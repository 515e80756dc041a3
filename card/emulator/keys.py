"""The software card's key commands: GENERAL AUTHENTICATE (management-key ``9B`` mutual or single
authentication, SP 800-73-4 Part 2 Appendix A.1; private-key operations with the slot's PIN policy,
§3.2.4), GENERATE ASYMMETRIC KEY PAIR (§3.3.2) and the Yubico GET METADATA (piv-protocol.md §3.2)."""

from __future__ import annotations

import hmac
import os
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from card import tlv
from card.apdu import KEY_REF_MANAGEMENT
from card.emulator.commands import CardStatus, Response
from card.emulator.state import SlotKey
from card.errors import BadResponseError
from card.piv.encoding import encode_public_key
from card.piv.model import KEY_REF_PIN, KEY_REF_PUK, KeyType, ManagementKeyAlgorithm, Slot
from card.sw import SW

if TYPE_CHECKING:
    from card.emulator.card import SoftPivCard

KEY_SLOTS = frozenset(Slot)
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def private_key(card: SoftPivCard, slot: int) -> tuple[int, PrivateKey]:
    """The key type and private key in ``slot``; ``6A 88`` when the slot holds none."""
    entry = card.state.keys.get(f"{slot:02X}")
    if entry is None:
        raise CardStatus(SW.REFERENCE_NOT_FOUND)
    key = serialization.load_pem_private_key(entry.private_pem.encode(), None)
    assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
    return entry.key_type, key


def get_metadata(card: SoftPivCard, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> Response:
    """``F7`` metadata (piv-protocol.md §3.2): 01 algorithm, 02 policy, 03 origin, 04 public key, 05 default, 06 retries."""
    state = card.state
    if p2 == KEY_REF_MANAGEMENT:
        return (tlv.tlv(0x01, bytes([state.management_key_algorithm])) + tlv.tlv(0x02, b"\x00\x01")
                + tlv.tlv(0x05, bytes([int(state.management_key_is_default)]))), SW.OK
    if p2 in (KEY_REF_PIN, KEY_REF_PUK):
        is_pin = p2 == KEY_REF_PIN
        default = (state.pin == "123456") if is_pin else (state.puk == "12345678")
        total = state.pin_max_retries if is_pin else state.puk_max_retries
        left = state.pin_retries if is_pin else state.puk_retries
        return tlv.tlv(0x05, bytes([int(default)])) + tlv.tlv(0x06, bytes([total, left])), SW.OK
    if p2 in KEY_SLOTS:
        if state.keys.get(f"{p2:02X}") is None:
            raise CardStatus(SW.REFERENCE_NOT_FOUND)
        key_type, key = private_key(card, p2)
        policy = {"never": 1, "once": 2, "always": 3}[state.pin_policy.get(f"{p2:02X}", "once")]
        pub = tlv.unwrap(encode_public_key(key.public_key()), b"\x7f\x49")
        return (tlv.tlv(0x01, bytes([key_type])) + tlv.tlv(0x02, bytes([policy, 1])) + tlv.tlv(0x03, b"\x01")
                + tlv.tlv(0x04, pub)), SW.OK
    raise CardStatus(SW.REFERENCE_NOT_FOUND)


def general_authenticate(card: SoftPivCard, p1: int, p2: int, data: bytes, le: int | None, pv: bool) -> Response:
    """GENERAL AUTHENTICATE ``7C { … }``: with ``9B`` the management-key protocol, with a key slot a
    private-key operation."""
    try:
        items = tlv.parse_dict(tlv.unwrap(data, 0x7C))
    except BadResponseError:
        raise CardStatus(SW.INCORRECT_DATA) from None
    if p2 == KEY_REF_MANAGEMENT:
        return _mgmt_auth(card, p1, items)
    if p2 not in KEY_SLOTS:
        raise CardStatus(SW.INCORRECT_P1_P2)
    return _sign(card, p1, p2, items, pv)


def _mgmt_auth(card: SoftPivCard, p1: int, items: dict[bytes, bytes]) -> Response:
    alg = card.state.management_key_algorithm
    tdes = ManagementKeyAlgorithm.TDES
    if p1 not in (alg, 0x00, 0x01) or (p1 in (0x00, 0x01) and alg != tdes):
        card.mgmt_pending = None
        raise CardStatus(SW.INCORRECT_DATA)
    mk = ManagementKeyAlgorithm(alg)
    cipher = mk.cipher(bytes.fromhex(card.state.management_key))
    block = mk.block_bytes

    def enc(b: bytes) -> bytes:
        e = cipher.encryptor()
        return e.update(b) + e.finalize()

    pending, card.mgmt_pending = card.mgmt_pending, None
    witness, challenge, response = items.get(b"\x80"), items.get(b"\x81"), items.get(b"\x82")
    if witness == b"" and challenge is None:  # mutual, step 1
        w = os.urandom(block)
        card.mgmt_pending = ("witness", alg, w)
        return tlv.tlv(0x7C, tlv.tlv(0x80, enc(w))), SW.OK
    if challenge == b"" and witness is None:  # single, step 1
        c = os.urandom(block)
        card.mgmt_pending = ("challenge", alg, c)
        return tlv.tlv(0x7C, tlv.tlv(0x81, c)), SW.OK
    if witness and challenge is not None and pending and pending[0] == "witness":
        if len(challenge) != block or not hmac.compare_digest(witness, pending[2]):
            card.mgmt_authenticated = False
            raise CardStatus(SW.SECURITY_STATUS_NOT_SATISFIED)
        card.mgmt_authenticated = True
        return tlv.tlv(0x7C, tlv.tlv(0x82, enc(challenge))), SW.OK
    if response and pending and pending[0] == "challenge":
        if not hmac.compare_digest(response, enc(pending[2])):
            card.mgmt_authenticated = False
            raise CardStatus(SW.SECURITY_STATUS_NOT_SATISFIED)
        card.mgmt_authenticated = True
        return b"", SW.OK
    card.mgmt_authenticated = False
    raise CardStatus(SW.INCORRECT_DATA)


def _sign(card: SoftPivCard, alg: int, slot: int, items: dict[bytes, bytes], pin_just_verified: bool) -> Response:
    key_type, key = private_key(card, slot)
    if alg != key_type:
        raise CardStatus(SW.INCORRECT_DATA)
    policy = card.state.pin_policy.get(f"{slot:02X}", "once")
    if policy == "always" and not pin_just_verified:
        raise CardStatus(SW.SECURITY_STATUS_NOT_SATISFIED)
    if policy == "once" and not card.pin_verified:
        raise CardStatus(SW.SECURITY_STATUS_NOT_SATISFIED)
    block = items.get(b"\x81")
    if items.get(b"\x82") != b"" or block is None:
        raise CardStatus(SW.INCORRECT_DATA)
    if isinstance(key, rsa.RSAPrivateKey):
        if len(block) != key.key_size // 8:
            raise CardStatus(SW.INCORRECT_DATA)
        nums = key.private_numbers()
        m = int.from_bytes(block, "big")
        if m >= nums.public_numbers.n:
            raise CardStatus(SW.INCORRECT_DATA)
        sig = pow(m, nums.d, nums.public_numbers.n).to_bytes(key.key_size // 8, "big")
    else:
        size = (key.curve.key_size + 7) // 8
        if len(block) != size:
            raise CardStatus(SW.INCORRECT_DATA)
        digest_alg: hashes.HashAlgorithm = hashes.SHA256() if size == 32 else hashes.SHA384()
        sig = key.sign(block, ec.ECDSA(Prehashed(digest_alg)))
    return tlv.tlv(0x7C, tlv.tlv(0x82, sig)), SW.OK


def generate(card: SoftPivCard, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> Response:
    """GENERATE ASYMMETRIC KEY PAIR ``AC { 80 <alg> }`` (needs the management key): replaces the
    slot's key and returns the ``7F49`` public-key template."""
    if p2 not in KEY_SLOTS:
        raise CardStatus(SW.INCORRECT_P1_P2)
    if not card.mgmt_authenticated:
        raise CardStatus(SW.SECURITY_STATUS_NOT_SATISFIED)
    try:
        params = tlv.parse_dict(tlv.unwrap(data, 0xAC))
    except BadResponseError:
        raise CardStatus(SW.INCORRECT_DATA) from None
    alg_raw = params.get(b"\x80")
    if not alg_raw or len(alg_raw) != 1 or alg_raw[0] not in card.state.supported_key_types:
        raise CardStatus(SW.INCORRECT_DATA)
    alg = alg_raw[0]
    key: PrivateKey
    if alg == KeyType.RSA2048:
        key = rsa.generate_private_key(65537, 2048)
    elif alg == KeyType.ECCP256:
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = ec.generate_private_key(ec.SECP384R1())
    card.state.keys[f"{p2:02X}"] = SlotKey(alg, private_pem(key))
    card.save()
    return encode_public_key(key.public_key()), SW.OK


def private_pem(key: PrivateKey) -> str:
    """PKCS#8 PEM, unencrypted (this is a test card: DESIGN §6)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
