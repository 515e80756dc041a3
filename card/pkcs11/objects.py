"""The objects of a PKCS#11 token as :class:`card.pkcs11.token.Pkcs11Token` reads, uses and changes
them: certificates paired with their private keys by ``CKA_ID``, signatures and raw RSA with the
private keys, certificate objects written (``C_CreateObject``), objects deleted and relabelled.

Safety (issue 14, "never lose a working card"): a certificate is replaced by creating the new
object before destroying the old one; a key is deleted certificate first, so the token never shows
a certificate without its private key; a certificate that does not parse is reported for itself
(F15) and never stops the others being read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from asn1crypto.core import Integer
from pkcs11 import Attribute, CertificateType, Mechanism, ObjectClass, SlotFlag
from pkcs11 import KeyType as P11KeyType
from pkcs11 import exceptions as p11

from card.certificates import key_matches, load_certificate, public_key_der, serial_note
from card.errors import CardError, CertificateObjectError, NotSupportedError, TokenDeviceError, TokenKeyError, TokenRemovedError
from card.pkcs11.errors import ckr_name, translate
from card.pkcs11.keys import KEY_ATTRIBUTES, NAMES, ecdsa_der, key_type_of, rsa_pkcs_input, sha256
from card.piv.model import KeyType
from card.token.base import KeyRef, TokenCertificate

if TYPE_CHECKING:
    import pkcs11
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from card.pkcs11.binding import Channel
    from card.pkcs11.keys import ModuleProfile
    from card.secret import Secret

_CERT_ATTRIBUTES = [Attribute.ID, Attribute.LABEL, Attribute.VALUE]
_SIGN_ATTRIBUTES = [*KEY_ATTRIBUTES, Attribute.ALWAYS_AUTHENTICATE]


class ObjectsMixin:
    """The object operations of :class:`~card.pkcs11.token.Pkcs11Token` (which provides the session)."""

    _channel: Channel
    _slot: pkcs11.Slot
    profile: ModuleProfile
    _rsa_mechanism: Mechanism | None = None
    """``CKM_SHA256_RSA_PKCS``, or ``CKM_RSA_PKCS`` over a DigestInfo once the module refused the first."""

    if TYPE_CHECKING:
        def _ensure_session(self) -> pkcs11.Session: ...
        def _for_writing(self) -> pkcs11.Session: ...
        def _pin_for(self, always_authenticate: bool) -> Secret | None: ...
        def _ref(self, key_id: bytes, label: str) -> KeyRef: ...
        def _logged_in(self) -> bool: ...
        def public_key(self, ref: KeyRef) -> PublicKeyTypes | None: ...

    # -- errors ----------------------------------------------------------------------------------
    def _translate(self, exc: p11.PKCS11Error, function: str, doing: str) -> CardError:
        """:func:`card.pkcs11.errors.translate`, and a device error from a token no longer in its
        slot is the token removed (libykcs11 answers a pulled card with ``CKR_DEVICE_ERROR``)."""
        err = translate(exc, function, doing)
        if isinstance(err, TokenDeviceError) and not self._present():
            return TokenRemovedError(f"the token was removed during {function} ({ckr_name(exc)})")
        return err

    @contextmanager
    def _mapped(self, function: str, doing: str, passthrough: type[p11.PKCS11Error] | None = None) -> Iterator[None]:
        """Binding exceptions inside become :mod:`card.errors` (see :meth:`_translate`)."""
        try:
            yield
        except p11.PKCS11Error as exc:
            if passthrough is not None and isinstance(exc, passthrough):
                raise
            raise self._translate(exc, function, doing) from exc

    def _present(self) -> bool:
        """Whether the token is still in its slot (``C_GetSlotList``, ``C_GetSlotInfo``); True when
        that cannot be told."""
        try:
            slots = self._channel.slots()
        except p11.PKCS11Error:
            return True
        return any(s.slot_id == self._slot.slot_id and s.flags & SlotFlag.TOKEN_PRESENT for s in slots)

    # -- finding ---------------------------------------------------------------------------------
    def _find_objects(self, key_id: bytes | None, cls: ObjectClass | None, session: pkcs11.Session | None = None
                      ) -> list[Any]:
        """Token objects with ``CKA_ID`` ``key_id`` (None: any) of class ``cls`` (None: any)."""
        template: dict[Attribute, Any] = {Attribute.TOKEN: True}
        if key_id is not None:
            template[Attribute.ID] = key_id
        if cls is not None:
            template[Attribute.CLASS] = cls
        with self._mapped("C_FindObjects", "searching its objects"):
            return self._channel.find(session or self._ensure_session(), template)

    def _private_key(self, ref: KeyRef) -> tuple[Any, dict[Attribute, Any]]:
        """The one private key at ``ref`` and its :data:`_SIGN_ATTRIBUTES`.

        Raises:
            TokenKeyError: none (``6A 88``); CardError: more than one (the token is ambiguous: not used).
        """
        keys = self._find_objects(ref.key_id, ObjectClass.PRIVATE_KEY)
        if not keys:
            raise TokenKeyError(f"no private key with CKA_ID {ref.hex} on the token")
        if len(keys) > 1:
            raise CardError(f"the token holds {len(keys)} private keys with CKA_ID {ref.hex}; cardrenew uses none of them")
        with self._mapped("C_GetAttributeValue", "reading a key"):
            return keys[0], self._channel.attributes(keys[0], _SIGN_ATTRIBUTES)

    # -- certificates ----------------------------------------------------------------------------
    def certificates(self) -> list[TokenCertificate]:
        """Every certificate on the token (``CKO_CERTIFICATE``, ``CKA_TOKEN`` true), one per
        ``CKA_ID`` in the token's order, each with whether a private key of that ``CKA_ID`` is there
        (None: the token hides private keys until the PIN is given). An unreadable certificate has
        ``error``. Several certificates at one ``CKA_ID`` (a replacement stopped between creating
        the new one and destroying the old): the newest when all certify the same key (the next
        write removes the others), else an ``error`` and cardrenew changes none of them."""
        certs = [self._read_certificate(obj) for obj in self._find_objects(None, ObjectClass.CERTIFICATE)]
        private = {self._id_of(obj) for obj in self._find_objects(None, ObjectClass.PRIVATE_KEY)}
        groups: dict[bytes, list[tuple[TokenCertificate, str]]] = {}
        for item, key_id, label in certs:
            groups.setdefault(key_id, []).append((item, label))
        out = []
        for key_id, group in groups.items():
            item, label = _one_of(group)
            has_key = True if key_id in private else (False if self._logged_in() else None)
            out.append(TokenCertificate(self._ref(key_id, label), item.certificate, item.raw, item.error, has_key,
                                        item.note))
        return out

    def certificate(self, ref: KeyRef) -> TokenCertificate:
        """The certificate at ``ref``: all three of certificate, raw and error None when there is none."""
        for item in self.certificates():
            if item.ref.key_id == ref.key_id:
                return item
        return TokenCertificate(ref, None, None, None, None)

    def key_refs(self) -> list[KeyRef]:
        """The ``CKA_ID`` of every certificate and private key, in the token's order (labels from
        the certificate, else the key)."""
        refs: dict[bytes, KeyRef] = {}
        for cls in (ObjectClass.CERTIFICATE, ObjectClass.PRIVATE_KEY):
            for obj in self._find_objects(None, cls):
                with self._mapped("C_GetAttributeValue", "reading an object"):
                    attrs = self._channel.attributes(obj, [Attribute.ID, Attribute.LABEL])
                key_id = bytes(attrs.get(Attribute.ID) or b"")
                refs.setdefault(key_id, self._ref(key_id, str(attrs.get(Attribute.LABEL) or "")))
        return list(refs.values())

    def _id_of(self, obj: Any) -> bytes:
        with self._mapped("C_GetAttributeValue", "reading an object"):
            return bytes(self._channel.attributes(obj, [Attribute.ID]).get(Attribute.ID) or b"")

    def _read_certificate(self, obj: Any) -> tuple[TokenCertificate, bytes, str]:
        with self._mapped("C_GetAttributeValue", "reading a certificate"):
            attrs = self._channel.attributes(obj, _CERT_ATTRIBUTES)
        key_id, label = bytes(attrs.get(Attribute.ID) or b""), str(attrs.get(Attribute.LABEL) or "")
        raw = bytes(attrs[Attribute.VALUE]) if attrs.get(Attribute.VALUE) is not None else None
        ref = KeyRef(key_id, label)
        if not raw:
            return TokenCertificate(ref, None, raw, "the certificate object is empty", None), key_id, label
        try:
            cert = load_certificate(raw)
        except CertificateObjectError as exc:
            return TokenCertificate(ref, None, raw, str(exc), None), key_id, label
        return TokenCertificate(ref, cert, raw, None, None, serial_note(cert)), key_id, label

    # -- private-key operations ------------------------------------------------------------------
    def sign(self, ref: KeyRef, key_type: KeyType, message: bytes) -> bytes:
        """SHA-256 signature of ``message`` with the key at ``ref``: RSA PKCS#1 v1.5
        (``CKM_SHA256_RSA_PKCS``; ``CKM_RSA_PKCS`` over the DigestInfo where the module lacks it),
        EC ``CKM_ECDSA`` over the digest, its r||s returned as DER. A key with
        ``CKA_ALWAYS_AUTHENTICATE`` gets the PIN in a context-specific login first.

        Raises:
            TokenKeyError (no key there ``6A 88``, a key of another type ``6A 80``), InvalidPinError,
            NotSupportedError, TokenRemovedError, BadResponseError.
        """
        key, attrs = self._private_key(ref)
        actual = key_type_of(attrs)
        if actual is not None and actual is not key_type:
            raise TokenKeyError(f"the key at CKA_ID {ref.hex} is {NAMES[actual]}, not {NAMES[key_type]}", other_type=True)
        pin = self._pin_for(bool(attrs.get(Attribute.ALWAYS_AUTHENTICATE)))
        if not key_type.is_rsa:
            with self._mapped("C_Sign", "CKM_ECDSA signatures"):
                return ecdsa_der(self._channel.sign(key, sha256(message), Mechanism.ECDSA, pin), key_type)
        if self._rsa_mechanism is None or self._rsa_mechanism == Mechanism.SHA256_RSA_PKCS:
            try:
                with self._mapped("C_Sign", "CKM_SHA256_RSA_PKCS signatures", passthrough=p11.MechanismInvalid):
                    signature = self._channel.sign(key, message, Mechanism.SHA256_RSA_PKCS, pin)
                self._rsa_mechanism = Mechanism.SHA256_RSA_PKCS
                return signature
            except p11.MechanismInvalid:
                self._rsa_mechanism = Mechanism.RSA_PKCS
        with self._mapped("C_Sign", "CKM_RSA_PKCS signatures"):
            return self._channel.sign(key, rsa_pkcs_input(message), Mechanism.RSA_PKCS, pin)

    def decipher(self, ref: KeyRef, block: bytes) -> bytes:
        """Raw RSA with the key at ``ref`` (``CKM_RSA_X_509``, the module's "raw RSA"; SCEP replies):
        the whole block, left-padded with zeros to the modulus length; the caller removes the padding.

        Raises:
            TokenKeyError (no RSA key there), NotSupportedError (the module has no raw RSA), InvalidPinError.
        """
        key, attrs = self._private_key(ref)
        if attrs.get(Attribute.KEY_TYPE) != P11KeyType.RSA:
            raise TokenKeyError(f"the key at CKA_ID {ref.hex} is not an RSA key", other_type=True)
        pin = self._pin_for(bool(attrs.get(Attribute.ALWAYS_AUTHENTICATE)))
        with self._mapped("C_Decrypt", "raw RSA (CKM_RSA_X_509)"):
            plain = self._channel.decrypt(key, block, Mechanism.RSA_X_509, pin)
        size = len(bytes(attrs.get(Attribute.MODULUS) or b"").lstrip(b"\0")) or len(block)
        return plain.rjust(size, b"\0")

    # -- changing the token ----------------------------------------------------------------------
    def write_certificate(self, ref: KeyRef, der: bytes, label: str) -> None:
        """``C_CreateObject`` of an X.509 certificate at ``ref.key_id`` (``CKA_ID``, ``CKA_LABEL``,
        ``CKA_SUBJECT``, ``CKA_ISSUER``, ``CKA_SERIAL_NUMBER``, ``CKA_VALUE``). A certificate already
        there is destroyed only after the new one was created (a PIV module replaces it in place).

        Raises:
            CertificateObjectError (``der`` is no certificate), CardError (it is not for the key at
            ``ref``; nothing written in either case), ReadOnlyTokenError,
            TokenFullError, ManagementKeyError, NotSupportedError.
        """
        cert = load_certificate(der)
        session = self._for_writing()
        key = self.public_key(ref)
        if key is not None and not key_matches(cert, key):
            raise CardError(f"the certificate is not for the key at CKA_ID {ref.hex}; nothing was written")
        old = [] if self.profile.piv else self._find_objects(ref.key_id, ObjectClass.CERTIFICATE, session)
        template = {
            Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.ID: ref.key_id, Attribute.LABEL: label,
            Attribute.SUBJECT: cert.subject.public_bytes(), Attribute.ISSUER: cert.issuer.public_bytes(),
            Attribute.SERIAL_NUMBER: Integer(cert.serial_number).dump(), Attribute.VALUE: der,
        }
        with self._mapped("C_CreateObject", "certificate objects"):
            self._channel.create(session, template)
        for obj in old:
            with self._mapped("C_DestroyObject", "deleting objects"):
                self._channel.destroy(obj)

    def delete(self, ref: KeyRef) -> None:
        """Side by side only: destroy the certificate(s), then the private key, then the public key
        at ``ref`` (so no moment shows a certificate without its key)."""
        self._side_by_side_only("delete keys")
        session = self._for_writing()
        for cls in (ObjectClass.CERTIFICATE, ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
            for obj in self._find_objects(ref.key_id, cls, session):
                with self._mapped("C_DestroyObject", "deleting objects"):
                    self._channel.destroy(obj)

    def relabel(self, ref: KeyRef, label: str) -> None:
        """Side by side only: ``CKA_LABEL`` = ``label`` on the certificate and keys at ``ref``."""
        self._side_by_side_only("rename keys")
        session = self._for_writing()
        for cls in (ObjectClass.CERTIFICATE, ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
            for obj in self._find_objects(ref.key_id, cls, session):
                with self._mapped("C_SetAttributeValue", "renaming objects"):
                    self._channel.set_attribute(obj, Attribute.LABEL, label)

    def _side_by_side_only(self, what: str) -> None:
        if not self.profile.side_by_side:
            raise NotSupportedError(f"a PIV card behind PKCS#11 cannot {what}: its four slots are fixed")


def _one_of(group: list[tuple[TokenCertificate, str]]) -> tuple[TokenCertificate, str]:
    """The certificate that stands for one ``CKA_ID`` (see :meth:`ObjectsMixin.certificates`)."""
    if len(group) == 1:
        return group[0]
    readable = [(item.certificate, item, label) for item, label in group if item.certificate is not None]
    if len(readable) < len(group) or len({public_key_der(cert.public_key()) for cert, _, _ in readable}) != 1:
        item, label = group[0]
        return TokenCertificate(item.ref, None, item.raw, f"{len(group)} different certificates share CKA_ID "
                                f"{item.ref.hex}; cardrenew changes none of them", None), label
    _, item, label = max(readable, key=lambda c: (c[0].not_valid_after_utc, c[0].not_valid_before_utc))
    return item, label
