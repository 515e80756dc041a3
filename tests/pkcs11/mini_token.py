"""A minimal :class:`card.token.Token` over python-pkcs11, for the side-by-side tests until
``card.pkcs11.Pkcs11Token`` is on main (then :func:`open_token` prefers it).

Only what :mod:`card.renewal.beside` uses: read a certificate, a public key, sign, generate beside,
write a certificate, delete, relabel. Module errors become ``card.errors.CardError`` (a fault
injected by ``faultshim.c`` is ``CKR_DEVICE_ERROR``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pkcs11 import Attribute, CertificateType, Mechanism, ObjectClass
from pkcs11 import KeyType as P11KeyType
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from card.errors import CardError
from card.piv import KeyType
from card.token import KeyRef, TokenCertificate, TokenInfo, TokenInterface

_CURVES = {KeyType.ECCP256: ("secp256r1", 32), KeyType.ECCP384: ("secp384r1", 48)}


class MiniToken:
    """One read-write user session on the token labelled ``label`` of ``module``."""

    def __init__(self, module: Path, label: str, pin: str) -> None:
        try:
            lib = pkcs11.lib(str(module))
            lib.reinitialize()  # SoftHSM2 reads SOFTHSM2_CONF at C_Initialize: each test has its own token directory
            self._token = lib.get_token(token_label=label)
            self._session = self._token.open(rw=True, user_pin=pin)
        except pkcs11.PKCS11Error as exc:
            raise CardError(f"token: {exc.__class__.__name__}") from None
        self.info = TokenInfo(TokenInterface.PKCS11, label, "SoftHSM project", "SoftHSM v2", self._token.serial.decode()
                              if isinstance(self._token.serial, bytes) else str(self._token.serial), side_by_side=True)
        self.calls = 0

    def _objects(self, cls: ObjectClass, key_id: bytes) -> list[pkcs11.Object]:
        self.calls += 1
        try:
            return list(self._session.get_objects({Attribute.CLASS: cls, Attribute.ID: key_id}))
        except pkcs11.PKCS11Error as exc:
            raise CardError(f"token: {exc.__class__.__name__}") from None

    def certificate(self, ref: KeyRef) -> TokenCertificate:
        found = self._objects(ObjectClass.CERTIFICATE, ref.key_id)
        if not found:
            return TokenCertificate(ref, None, None, None, None)
        ref = KeyRef(ref.key_id, str(found[0][Attribute.LABEL]), ref.slot)
        raw = bytes(found[0][Attribute.VALUE])
        try:
            cert = x509.load_der_x509_certificate(raw)
        except ValueError as exc:
            return TokenCertificate(ref, None, raw, str(exc), None)
        return TokenCertificate(ref, cert, raw, None, bool(self._objects(ObjectClass.PRIVATE_KEY, ref.key_id)))

    def public_key(self, ref: KeyRef):  # noqa: ANN201
        found = self._objects(ObjectClass.PUBLIC_KEY, ref.key_id)
        if not found:
            return None
        key = found[0]
        if key.key_type == P11KeyType.EC:
            return load_der_public_key(encode_ec_public_key(key))
        return rsa.RSAPublicNumbers(int.from_bytes(key[Attribute.PUBLIC_EXPONENT], "big"),
                                    int.from_bytes(key[Attribute.MODULUS], "big")).public_key()

    def _private(self, ref: KeyRef) -> pkcs11.Object:
        found = self._objects(ObjectClass.PRIVATE_KEY, ref.key_id)
        if not found:
            raise CardError(f"no private key {ref.hex}")
        return found[0]

    def sign(self, ref: KeyRef, key_type: KeyType, message: bytes) -> bytes:
        key = self._private(ref)
        self.calls += 1
        try:
            if key_type is KeyType.RSA2048:
                return bytes(key.sign(message, mechanism=Mechanism.SHA256_RSA_PKCS))
            raw = bytes(key.sign(hashlib.sha256(message).digest(), mechanism=Mechanism.ECDSA))
        except pkcs11.PKCS11Error as exc:
            raise CardError(f"sign: {exc.__class__.__name__}") from None
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def decipher(self, ref: KeyRef, block: bytes) -> bytes:
        key = self._private(ref)
        self.calls += 1
        return bytes(key.decrypt(block, mechanism=Mechanism.RSA_X_509))

    def generate_key(self, ref: KeyRef, key_type: KeyType):  # noqa: ANN201
        common = {Attribute.TOKEN: True, Attribute.ID: ref.key_id, Attribute.LABEL: ref.label}
        self.calls += 1
        try:
            if key_type is KeyType.RSA2048:
                pub, _ = self._session.generate_keypair(
                    P11KeyType.RSA, 2048, store=True, public_template=common,
                    private_template={**common, Attribute.PRIVATE: True, Attribute.SENSITIVE: True})
            else:
                params = self._session.create_domain_parameters(
                    P11KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVES[key_type][0])}, local=True)
                pub, _ = params.generate_keypair(store=True, public_template=common,
                                                 private_template={**common, Attribute.PRIVATE: True, Attribute.SENSITIVE: True})
        except pkcs11.PKCS11Error as exc:
            raise CardError(f"generate: {exc.__class__.__name__}") from None
        return self.public_key(ref)

    def write_certificate(self, ref: KeyRef, der: bytes, label: str) -> None:
        cert = x509.load_der_x509_certificate(der)
        for old in self._objects(ObjectClass.CERTIFICATE, ref.key_id):
            self._call(old.destroy)
        self._call(lambda: self._session.create_object({
            Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.TOKEN: True, Attribute.ID: ref.key_id, Attribute.LABEL: label, Attribute.VALUE: der,
            Attribute.SUBJECT: cert.subject.public_bytes()}))

    def _call(self, fn) -> object:  # noqa: ANN001
        self.calls += 1
        try:
            return fn()
        except pkcs11.PKCS11Error as exc:
            raise CardError(f"token: {exc.__class__.__name__}") from None

    def delete(self, ref: KeyRef) -> None:
        """Certificate first (a kill then leaves a key without a certificate, never the reverse)."""
        for cls in (ObjectClass.CERTIFICATE, ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
            for obj in self._objects(cls, ref.key_id):
                self._call(obj.destroy)

    def relabel(self, ref: KeyRef, label: str) -> None:
        for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY, ObjectClass.CERTIFICATE):
            for obj in self._objects(cls, ref.key_id):
                if obj[Attribute.LABEL] != label:
                    self._call(lambda o=obj: o.__setitem__(Attribute.LABEL, label))

    def close(self) -> None:
        self._session.close()

    def certificates(self) -> list[TokenCertificate]:
        """Every certificate object, in the token's order."""
        self.calls += 1
        found = list(self._session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}))
        return [self.certificate(KeyRef(bytes(o[Attribute.ID]), str(o[Attribute.LABEL]))) for o in found]
