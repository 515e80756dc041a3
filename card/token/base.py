"""The token boundary (issue 14; DESIGN §2): what the renewal engine needs of a card or token,
whatever speaks to it — our PIV commands over APDUs (:class:`card.token.piv.PivToken`) or a
PKCS#11 module (``card.pkcs11``: SoftHSM2, Yubico's libykcs11, a vendor's module).

This module holds only the shape: :class:`Token` (a Protocol), the values it returns and takes
(:class:`TokenInfo`, :class:`KeyRef`, :class:`TokenCertificate`, :class:`CardIdentity`). It imports no
pyscard and no ``pkcs11`` (import contracts ``pyscard-only-in-pcsc``, ``pkcs11-only-in-card-pkcs11``);
errors are those of :mod:`card.errors` — never a binding's exception above its implementation.

Two renewal orders (DESIGN §3): ``info.side_by_side`` False — the PIV order: generating a key at a
:class:`KeyRef` replaces the key there (a PIV card, or a PKCS#11 module over one, such as libykcs11);
True — a new key is made beside the old one under a new ``CKA_ID``, and the old key and certificate
are deleted (or relabelled) only after the new ones passed the test signature (``card.renewal.beside``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from card.piv.model import KeyType, Slot

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from card.secret import Secret

PIV_SLOT_LABELS = {
    Slot.AUTHENTICATION: "PIV Authentication",
    Slot.SIGNATURE: "Digital Signature",
    Slot.KEY_MANAGEMENT: "Key Management",
    Slot.CARD_AUTH: "Card Authentication",
}
"""The slot names of SP 800-73-4 Part 1 Table 4b, as a PIV KeyRef's label shows them."""


class TokenInterface(StrEnum):
    """How cardrenew speaks to the token: ``[card] interface`` in the configuration."""

    PIV = "piv"
    PKCS11 = "pkcs11"


@dataclass(frozen=True)
class TokenInfo:
    """Who the token is, as the logon pane and the Card tab name it.

    ``side_by_side``: True when a new key can live beside the old one (the renewal keeps the old
    key and certificate working until the new ones are written and tested); False: the PIV order.
    """

    interface: TokenInterface
    label: str
    """What the user calls it: ``CK_TOKEN_INFO.label`` (PKCS#11 v2.40 §3.2); PIV: ``"PIV card"``."""
    manufacturer: str
    """``CK_TOKEN_INFO.manufacturerID``; PIV: from the card if known, else ``""``."""
    model: str
    """``CK_TOKEN_INFO.model``; PIV: ``""`` unless the card says."""
    serial: str
    """``CK_TOKEN_INFO.serialNumber``; PIV: the CHUID GUID as 32 hex digits once read, else ``""``."""
    side_by_side: bool
    reader: str = ""
    """Where the token sits: the PC/SC reader name (PIV), or the PKCS#11 slot description."""


@dataclass(frozen=True)
class KeyRef:
    """Where one key (and its certificate) lives on the token.

    Identity is ``key_id`` alone (equality and hash): ``label`` is what the user reads and can
    change (``relabel``), ``slot`` follows from the id on a PIV card.
    """

    key_id: bytes
    """PKCS#11 ``CKA_ID`` of the private key, public key and certificate; PIV: the slot byte (``b"\\x9a"``)."""
    label: str = field(compare=False)
    """The certificate's ``CKA_LABEL``; PIV: e.g. ``"PIV Authentication (9A)"``."""
    slot: Slot | None = field(default=None, compare=False)
    """The PIV slot when the token is a PIV card (APDUs, or a PKCS#11 module over one); else None."""

    @property
    def hex(self) -> str:
        """``key_id`` in upper-case hex: the journal's key (``"9A"`` for PIV, as journals always had it)."""
        return self.key_id.hex().upper()

    @classmethod
    def piv(cls, slot: Slot, label: str | None = None) -> KeyRef:
        """The KeyRef of a PIV slot: id = the slot byte, label ``"<slot name> (9A)"`` unless given."""
        return cls(bytes([int(slot)]), label or f"{PIV_SLOT_LABELS[slot]} ({slot.hex})", slot)

    @property
    def piv_slot(self) -> Slot:
        """The PIV slot of this key.

        Raises:
            ValueError: the key is not in a PIV slot (a side-by-side token's key).
        """
        if self.slot is not None:
            return self.slot
        if len(self.key_id) == 1:
            return Slot(self.key_id[0])
        raise ValueError(f"key {self.hex} is not in a PIV slot")


@dataclass(frozen=True)
class TokenCertificate:
    """One certificate object on the token and what is known of its key.

    A certificate that cannot be decoded has ``certificate`` None and ``error`` set (F15: the
    others still work); an empty slot / no certificate object has all three of ``certificate``,
    ``raw`` and ``error`` None.
    """

    ref: KeyRef
    certificate: x509.Certificate | None
    raw: bytes | None
    """The certificate as read (PIV: the value of the ``53`` object; PKCS#11: ``CKA_VALUE``); None: no object."""
    error: str | None
    has_private_key: bool | None
    """Whether the token holds the private key for it; None: the token cannot say (PIV without metadata)."""
    note: str | None = None
    """Something the holder should know about a readable certificate (a negative serial number)."""


@dataclass(frozen=True)
class CardIdentity:
    """What a PIV card says about itself in its CHUID (SP 800-73-4 Part 1 Table 9)."""

    guid: bytes
    """The 16-byte GUID (tag ``34``): the journal's card id and the diversified management key's input."""
    guid_text: str
    """The GUID as 8-4-4-4-12 text."""
    expiry: dt.date | None
    """The card's own expiration date (tag ``35``): no certificate may be valid past it."""


@runtime_checkable
class Token(Protocol):
    """A card or token the renewal engine works on. Synchronous; runs on the card worker thread.

    Errors (all :mod:`card.errors`): ``CardRemovedError`` from any method; the others as each
    method says. A refused operation changed nothing on the token unless its docstring says so.
    """

    @property
    def info(self) -> TokenInfo:
        """Who the token is (may gain its serial after the first read on PIV)."""

    @property
    def calls(self) -> int:
        """Commands sent so far: APDUs (PIV, ``apdus_sent``) or PKCS#11 function calls."""

    # -- reading, no PIN ---------------------------------------------------------------------
    def start(self) -> set[KeyType] | None:
        """Open the token for a run: PIV SELECT (SP 800-73-4 Part 2 §3.1.1); PKCS#11: the session.

        Returns:
            The key types the token says it can generate (PIV: SELECT's algorithm list;
            PKCS#11: from its mechanisms), or None when it does not say.

        Raises:
            ApduError (no PIV application), TokenNotFoundError.
        """

    def card_identity(self) -> CardIdentity | None:
        """The card's CHUID (GUID, expiry); None on tokens that have none (PKCS#11) or when unreadable."""

    def key_refs(self) -> list[KeyRef]:
        """Where keys are or can be made on this token (PIV: the four slots, no APDU; PKCS#11: the
        ``CKA_ID`` of every certificate and private key), in the token's order."""

    def certificates(self) -> list[TokenCertificate]:
        """Every certificate object on the token (PIV: slots 9A, 9C, 9D, 9E), in the token's order."""

    def certificate(self, ref: KeyRef) -> TokenCertificate:
        """The certificate at ``ref`` (an unreadable one has ``error`` set; never raises for its content)."""

    def public_key(self, ref: KeyRef) -> PublicKeyTypes | None:
        """The public key of the private key at ``ref`` without the PIN (PIV: Yubico GET METADATA;
        PKCS#11: the public-key object), or None when the token does not say."""

    def pin_tries_left(self) -> int | None:
        """PIN tries left without spending one (0: blocked); None when the token does not say
        (PIV: the PIN is verified now; PKCS#11: ``CKF_USER_PIN_COUNT_LOW`` / ``FINAL_TRY`` /
        ``LOCKED`` map to a number only where they say one)."""

    # -- access ------------------------------------------------------------------------------
    def log_in(self, pin: Secret) -> None:
        """User PIN (PIV VERIFY, SP 800-73-4 Part 2 §3.2.1; PKCS#11 ``C_Login(CKU_USER)``).

        The token keeps a reference to ``pin`` (not a copy) for the keys that ask for it before
        each use — PIV PIN-always (9C, F08), PKCS#11 ``CKA_ALWAYS_AUTHENTICATE`` — until the
        caller wipes it at the end of the run. Never logged.

        Raises:
            PinFormatError, InvalidPinError (with tries left), PinBlockedError.
        """

    def log_in_admin(self) -> None:
        """Write access: PIV management key (DESIGN §5, F14); PKCS#11: SO PIN / nothing where the
        user session may write.

        Raises:
            ManagementKeyError, ConfigError.
        """

    # -- keys and objects --------------------------------------------------------------------
    def generate_key(self, ref: KeyRef, key_type: KeyType) -> PublicKeyTypes:
        """A new key pair at ``ref``; returns its public key (SP 800-73-4 Part 2 §3.3.2;
        ``C_GenerateKeyPair``). PIV order: destroys the key at ``ref``. Side by side: ``ref`` must be
        a new ``key_id``.

        Raises:
            NotSupportedError (F13: the token cannot make this type; nothing changed), ApduError.
        """

    def sign(self, ref: KeyRef, key_type: KeyType, message: bytes) -> bytes:
        """SHA-256 signature of ``message`` with the key at ``ref``: RSA PKCS#1 v1.5
        (``CKM_SHA256_RSA_PKCS``), EC a DER ``ECDSA-Sig-Value`` (``CKM_ECDSA`` r||s → DER). Sends
        what a PIN-always key needs first. Needs :meth:`log_in`.

        Raises:
            ApduError (``69 82``: not logged in; ``6A 80``: no key of this type), InvalidPinError.
        """

    def decipher(self, ref: KeyRef, block: bytes) -> bytes:
        """Raw RSA private-key operation on a 256-byte block (``CKM_RSA_X_509``; SCEP replies); the
        caller removes the padding. Needs :meth:`log_in`."""

    def write_certificate(self, ref: KeyRef, der: bytes, label: str) -> None:
        """Write (replace) the certificate at ``ref``. Needs :meth:`log_in_admin` on PIV.

        Raises:
            CertificateTooLargeError (F05: nothing written), ApduError.
        """

    def delete(self, ref: KeyRef) -> None:
        """Side by side only: delete the private key, public key and certificate at ``ref``."""

    def relabel(self, ref: KeyRef, label: str) -> None:
        """Side by side only: set ``CKA_LABEL`` of the objects at ``ref`` (the ``superseded`` mode)."""

    def close(self) -> None:
        """End the session; the token object is not used afterwards."""
