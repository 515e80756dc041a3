"""Keys on a PKCS#11 token: the generation templates, public keys from key attributes, signatures
in the form the rest of cardrenew expects, and the modules that put a PIV card behind PKCS#11.

Sources: PKCS#11 v2.40 Current Mechanisms §2.1 (RSA: ``CKA_MODULUS``, ``CKA_PUBLIC_EXPONENT``,
``CKM_SHA256_RSA_PKCS``, ``CKM_RSA_PKCS``, ``CKM_RSA_X_509``) and §2.3 (EC: ``CKA_EC_PARAMS`` a DER
namedCurve OID, ``CKA_EC_POINT`` a DER OCTET STRING holding the X9.62 point, ``CKM_ECDSA`` over a
digest returning r||s); RFC 8017 §9.2 (DigestInfo); RFC 5480 / SEC 1 (the ECDSA-Sig-Value DER).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from asn1crypto.core import ObjectIdentifier, OctetString
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, MechanismFlag
from pkcs11 import KeyType as P11KeyType

from card.errors import BadResponseError
from card.piv.model import KeyType, Slot

NAMES = {KeyType.RSA2048: "RSA-2048", KeyType.ECCP256: "P-256", KeyType.ECCP384: "P-384"}
"""A key type as the user reads it."""
_CURVES: dict[str, tuple[KeyType, ec.EllipticCurve]] = {
    "1.2.840.10045.3.1.7": (KeyType.ECCP256, ec.SECP256R1()),
    "1.3.132.0.34": (KeyType.ECCP384, ec.SECP384R1()),
}
_CURVE_OID = {kt: oid for oid, (kt, _) in _CURVES.items()}
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
"""DER DigestInfo prefix of a SHA-256 hash (RFC 8017 §9.2 note 1)."""

KEY_ATTRIBUTES = [Attribute.KEY_TYPE, Attribute.MODULUS, Attribute.PUBLIC_EXPONENT, Attribute.EC_PARAMS,
                  Attribute.EC_POINT]
"""What a key object tells of its public key (a private EC key has no ``CKA_EC_POINT``)."""


# -- PIV cards behind PKCS#11 -----------------------------------------------------------------------
PIV_IDS = {b"\x01": Slot.AUTHENTICATION, b"\x02": Slot.SIGNATURE, b"\x03": Slot.KEY_MANAGEMENT,
           b"\x04": Slot.CARD_AUTH}
"""``CKA_ID`` ↔ PIV slot, the same in Yubico's libykcs11 (doc/YKCS11: "ykcs11 id 1..4 = 9a, 9c, 9d,
9e"; 5..24 are the retired slots 82..95, 25 is F9) and OpenSC's PIV emulation (pkcs15-piv.c: ids
"01".."04"; its retired ids differ). cardrenew renews only these four."""


@dataclass(frozen=True)
class ModuleProfile:
    """What kind of token a module offers, from ``CK_TOKEN_INFO.manufacturerID``.

    Attributes:
        piv: a PIV card behind the module (libykcs11 "Yubico…", OpenSC PIV "piv_II"): four fixed key
            containers (:data:`PIV_IDS`), a new key replaces the old one (no side by side).
        so_writes: writing (key generation, certificates) needs ``C_Login(CKU_SO)``: libykcs11,
            whose SO PIN is the PIV management key in hex (ykcs11.c C_Login/C_InitToken:
            ``ykpiv_hex_decode`` of the PIN; C_GenerateKeyPair/C_CreateObject/C_DestroyObject
            refuse other logins with ``CKR_USER_TYPE_INVALID``).
        extractable_attribute: the private-key template may carry ``CKA_EXTRACTABLE`` false
            (libykcs11 2.2 refuses the attribute, ``CKR_ATTRIBUTE_TYPE_INVALID``; a PIV key never
            leaves the card anyway).
    """

    piv: bool
    so_writes: bool
    extractable_attribute: bool

    @property
    def side_by_side(self) -> bool:
        return not self.piv


def profile_for(manufacturer: str) -> ModuleProfile:
    """The profile of a token whose ``CK_TOKEN_INFO.manufacturerID`` is ``manufacturer``."""
    name = manufacturer.strip().lower()
    if name.startswith("yubico"):
        return ModuleProfile(piv=True, so_writes=True, extractable_attribute=False)
    if name.startswith("piv_ii"):
        return ModuleProfile(piv=True, so_writes=False, extractable_attribute=False)
    return ModuleProfile(piv=False, so_writes=False, extractable_attribute=True)


# -- generation -------------------------------------------------------------------------------------
def keypair_templates(key_type: KeyType, key_id: bytes, label: str, profile: ModuleProfile
                      ) -> tuple[P11KeyType, int | None, MechanismFlag, dict[Attribute, Any], dict[Attribute, Any]]:
    """The binding's arguments for ``C_GenerateKeyPair`` of ``key_type`` (a token object, private,
    sensitive, not extractable, signing; RSA also deciphers for SCEP): key type, key length,
    capabilities, public template, private template."""
    common = {Attribute.TOKEN: True, Attribute.ID: key_id, Attribute.LABEL: label}
    private = {**common, Attribute.PRIVATE: True, Attribute.SENSITIVE: True, Attribute.SIGN: True}
    if profile.extractable_attribute:
        private[Attribute.EXTRACTABLE] = False
    public = {**common, Attribute.VERIFY: True}
    if key_type.is_rsa:
        private[Attribute.DECRYPT] = True
        public[Attribute.ENCRYPT] = True
        caps = MechanismFlag.SIGN | MechanismFlag.VERIFY | MechanismFlag.DECRYPT | MechanismFlag.ENCRYPT
        return P11KeyType.RSA, 2048, caps, public, private
    public[Attribute.EC_PARAMS] = ObjectIdentifier(_CURVE_OID[key_type]).dump()
    return P11KeyType.EC, None, MechanismFlag.SIGN | MechanismFlag.VERIFY, public, private


# -- reading keys -----------------------------------------------------------------------------------
def key_type_of(attrs: dict[Attribute, Any]) -> KeyType | None:
    """The key type of a key object's attributes (:data:`KEY_ATTRIBUTES`), or None when it is none
    of RSA-2048, P-256, P-384."""
    kind = attrs.get(Attribute.KEY_TYPE)
    if kind == P11KeyType.RSA:
        modulus = attrs.get(Attribute.MODULUS)
        return KeyType.RSA2048 if modulus is not None and len(modulus.lstrip(b"\0")) == 256 else None
    if kind == P11KeyType.EC:
        curve = _curve(attrs.get(Attribute.EC_PARAMS))
        return curve[0] if curve else None
    return None


def _curve(params: bytes | None) -> tuple[KeyType, ec.EllipticCurve] | None:
    if not params:
        return None
    try:
        oid = ObjectIdentifier.load(bytes(params)).dotted
    except (ValueError, TypeError):
        return None
    return _CURVES.get(oid)


def public_key_of(attrs: dict[Attribute, Any]) -> PublicKeyTypes | None:
    """The public key in a key object's attributes (RSA: modulus and exponent; EC: the curve and
    the point — DER OCTET STRING as the spec says, or the bare point as some modules give it), or
    None when they do not hold one."""
    kind = attrs.get(Attribute.KEY_TYPE)
    if kind == P11KeyType.RSA and attrs.get(Attribute.MODULUS) and attrs.get(Attribute.PUBLIC_EXPONENT):
        n = int.from_bytes(attrs[Attribute.MODULUS], "big")
        e = int.from_bytes(attrs[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    curve = _curve(attrs.get(Attribute.EC_PARAMS)) if kind == P11KeyType.EC else None
    point = attrs.get(Attribute.EC_POINT)
    if curve is None or not point:
        return None
    point = bytes(point)
    candidates = [point]
    try:
        candidates.insert(0, bytes(OctetString.load(point, strict=True).native))
    except (ValueError, TypeError):
        pass  # not DER: the bare point
    for raw in candidates:
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(curve[1], raw)
        except ValueError:
            continue
    return None


# -- signatures -------------------------------------------------------------------------------------
def ecdsa_der(raw: bytes, key_type: KeyType) -> bytes:
    """``CKM_ECDSA``'s r||s (each the curve's field size) as the DER ECDSA-Sig-Value X.509 uses.

    Raises:
        BadResponseError: the module returned another length.
    """
    size = key_type.sign_bytes
    if len(raw) != 2 * size:
        raise BadResponseError(f"the token's ECDSA signature is {len(raw)} bytes, not {2 * size} (r||s)")
    return encode_dss_signature(int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big"))


def sha256(message: bytes) -> bytes:
    return hashlib.sha256(message).digest()


def rsa_pkcs_input(message: bytes) -> bytes:
    """What ``CKM_RSA_PKCS`` signs for a SHA-256 PKCS#1 v1.5 signature (the module pads it):
    DigestInfo(SHA-256) || hash (RFC 8017 §9.2)."""
    return SHA256_DIGEST_INFO + sha256(message)
