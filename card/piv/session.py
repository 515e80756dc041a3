"""PIV application commands (NIST SP 800-73-4 Part 2 §3) over an :class:`ApduProtocol`.

Names follow the spec: slot ``9A`` PIV Authentication, ``9C`` Digital Signature, management
key ``9B``; keys come back as ``cryptography`` public-key objects. Every method is
synchronous and must run on the card worker thread.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

from card import tlv
from card.apdu import INS, KEY_REF_MANAGEMENT, SW_OK, ApduProtocol, CommandApdu
from card.errors import (
    ApduError,
    BadResponseError,
    CertificateObjectError,
    InvalidPinError,
    ManagementKeyError,
    NotSupportedError,
    PinBlockedError,
)
from card.piv.encoding import Chuid, encode_pin, parse_chuid, parse_public_key, pkcs1v15_sha256_block
from card.piv.model import (
    KEY_REF_PIN,
    OBJECT_CHUID,
    OBJECT_DISCOVERY,
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
from card.piv.quirks import (
    generate_algorithm_refused,
    management_key_algorithm_from_metadata,
    management_key_algorithm_refused,
    private_key_needs_pin,
    retries_from_sw,
)
from card.secret import Secret, require_secret
from card.sw import SW
from card.transport import CardTransport

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from card.certificates import SlotCertificate


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
        return self._send_ok(INS.SELECT, 0x04, 0x00, PIV_AID_SELECT)

    def get_data(self, object_id: bytes) -> bytes | None:
        """GET DATA of one object (SP 800-73-4 Part 2 §3.1.2); returns the value inside ``53``.

        Returns:
            The object value (bytes), or None when the card answers ``6A 82`` (no such object).

        Raises:
            ApduError: any other status; BadResponseError: the answer is not a ``53`` TLV.
        """
        resp, sw = self._send(INS.GET_DATA, 0x3F, 0xFF, tlv.tlv(0x5C, object_id))
        if sw == SW.NOT_FOUND:
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
        self._send_ok(INS.PUT_DATA, 0x3F, 0xFF, tlv.tlv(0x5C, object_id) + tlv.tlv(TAG_OBJECT_WRAP, value), le=None)

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
        _, sw = self._send(INS.VERIFY, 0x00, KEY_REF_PIN, le=None)
        if sw == SW_OK:
            return None
        if sw == SW.AUTHENTICATION_BLOCKED:
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
        _, sw = self._send(INS.VERIFY, 0x00, KEY_REF_PIN, block, le=None)
        if sw == SW_OK:
            return
        if sw == SW.AUTHENTICATION_BLOCKED:
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
        self._change_reference_data(KEY_REF_PIN, encode_pin(old) + encode_pin(new), INS.CHANGE_REFERENCE_DATA)

    def reset_retry(self, puk: Secret, new_pin: Secret) -> None:
        """RESET RETRY COUNTER: unblock the PIN with the PUK and set ``new_pin`` (SP 800-73-4 Part 2 §3.2.3).

        Sends ``00 2C 00 80 10`` + the PUK block (8 bytes) + the new PIN block (8 bytes), each
        made by :func:`encode_pin`. Neither value is logged.

        Raises:
            PinFormatError: the PUK or the new PIN is not 6–8 bytes (no APDU sent).
            InvalidPinError: ``63 CX``, the PUK was wrong, with ``attempts_remaining`` (PUK tries).
            PinBlockedError: ``69 83`` (or ``63 C0``): the PUK is blocked.
        """
        self._change_reference_data(KEY_REF_PIN, encode_pin(puk) + encode_pin(new_pin), INS.RESET_RETRY_COUNTER)

    def _change_reference_data(self, key_ref: int, data: bytes, ins: int) -> None:
        _, sw = self._send(ins, 0x00, key_ref, data, le=None)
        if sw == SW_OK:
            return
        if sw == SW.AUTHENTICATION_BLOCKED:
            raise PinBlockedError("The PUK is blocked." if ins == INS.RESET_RETRY_COUNTER else "The PIN is blocked.")
        retries = retries_from_sw(sw)
        if retries is not None:
            if retries == 0:
                raise PinBlockedError("The PUK is blocked." if ins == INS.RESET_RETRY_COUNTER else "The PIN is blocked.")
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
        resp, sw = self._send(INS.GET_METADATA, 0x00, reference)
        if sw != SW_OK:
            return None
        try:
            retries = tlv.parse_dict(resp).get(b"\x06")
        except Exception:  # noqa: BLE001 - malformed metadata: as if the card had none
            return None
        return retries[1] if retries is not None and len(retries) == 2 else None

    def get_slot_public_key(self, slot: Slot) -> PublicKeyTypes | None:
        """The public key of the private key in ``slot`` from GET METADATA (Yubico ``00 F7 00 <slot>``,
        piv-protocol.md §3.2: tag ``01`` algorithm, tag ``04`` the public key's ``7F49`` content), with
        no PIN: what ``status`` compares with the slot's certificate.

        Returns:
            The key, or None when the card does not answer metadata (plain PIV: ``6D 00``; an empty
            slot: ``6A 88``), or answers something malformed or of an algorithm we do not know.

        Raises:
            CardRemovedError / transport errors only; no status word raises.
        """
        resp, sw = self._send(INS.GET_METADATA, 0x00, int(slot))
        if sw != SW_OK:
            return None
        try:
            items = tlv.parse_dict(resp)
            alg, pub = items.get(b"\x01"), items.get(b"\x04")
            if alg is None or pub is None or len(alg) != 1:
                return None
            return parse_public_key(KeyType(alg[0]), tlv.tlv(b"\x7f\x49", pub))
        except Exception:  # noqa: BLE001 - malformed metadata: as if the card had none
            return None

    def get_version(self) -> tuple[int, int, int] | None:
        """GET VERSION (Yubico ``00 FD 00 00``, piv-protocol.md §3.2): firmware major, minor, patch.

        Returns:
            The 3-byte version, or None when the card does not implement the command
            (``6D 00``, ``6E 00``, ``6A 81``) or answers something other than 3 bytes.

        Raises:
            CardRemovedError / transport errors only; no status word raises.
        """
        resp, sw = self._send(INS.GET_VERSION, 0x00, 0x00)
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
        resp, sw = self._send(INS.GET_METADATA, 0x00, KEY_REF_MANAGEMENT)
        if sw != SW_OK:
            return None
        return management_key_algorithm_from_metadata(resp)

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
        resp, sw = self._send(INS.GENERAL_AUTHENTICATE, algorithm, KEY_REF_MANAGEMENT,
                              tlv.tlv(TAG_DYNAMIC_AUTH, tlv.tlv(TAG_WITNESS, b"")))
        if management_key_algorithm_refused(sw):
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
        resp, sw = self._send(INS.GENERAL_AUTHENTICATE, algorithm, KEY_REF_MANAGEMENT, data)
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
        resp, sw = self._send(INS.GENERATE_ASYMMETRIC_KEY_PAIR, 0x00, slot, data)
        if generate_algorithm_refused(sw):
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
        resp, sw = self._send(INS.GENERAL_AUTHENTICATE, key_type, slot, data)
        if private_key_needs_pin(sw):
            raise ApduError(sw, f"slot {slot.hex}: private-key operation refused, PIN not verified (SW 6982)")
        if sw != SW_OK:
            raise ApduError(sw)
        result = tlv.parse_dict(tlv.unwrap(resp, TAG_DYNAMIC_AUTH)).get(bytes([TAG_RESPONSE]))
        if not result:
            raise BadResponseError("GENERAL AUTHENTICATE response has no tag 82")
        return result
