"""A PIV card as a :class:`~card.token.base.Token`: our PIV commands (:class:`~card.piv.PivSession`,
SP 800-73-4 Part 2) over APDUs. Keys live in the four slots (one key each: ``side_by_side`` is False,
so the engine keeps the PIV order of DESIGN §3).

What the card demands around its commands is done here, once, for every caller:

- PIN always (F08; SP 800-73-4 Part 1 §3.3.2): slot ``9C`` signs only right after a VERIFY. Each
  private-key operation on such a slot sends VERIFY first, unless our last VERIFY was the very
  command before (the run's first VERIFY then serves the first such operation: no extra APDU).
- Write access (DESIGN §5): the management key ``9B``, its algorithm from the card's metadata before
  the configured one (F14); GENERATE and PUT DATA answered ``69 82`` (the card forgot the
  authentication) are authenticated once more and sent again — a refused command changed nothing.
- PUT DATA of a certificate: uncompressed when it fits, else gzip (issue 3), else
  CertificateTooLargeError before anything is written (F05); a card whose capacity is smaller than
  configured answers ``6A 84`` / ``67 00``: the same error.

Where the management key comes from (configuration, GUID diversification) is given by the
assembly as a :class:`ManagementKeyAuthenticator` (``card.renewal.admin.piv_token`` builds one from
the settings), so this layer reads no configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from card.errors import (
    ApduError,
    CardError,
    CardRemovedError,
    CertificateTooLargeError,
    ManagementKeyError,
    NotSupportedError,
    PinBlockedError,
)
from card.piv.encoding import parse_supported_key_types
from card.piv.model import KeyType, ManagementKeyAlgorithm, Slot
from card.piv.quirks import certificate_too_large, management_key_algorithm, management_key_forgotten, pin_always
from card.piv.session import PivSession
from card.token.base import CardIdentity, KeyRef, TokenCertificate, TokenInfo, TokenInterface

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from card.secret import Secret

T = TypeVar("T")

PIV_LABEL = "PIV card"
DEFAULT_MAX_CERTIFICATE_BYTES = 3052
"""A YubiKey's certificate object (``card.max_certificate_bytes`` in the configuration)."""


class ManagementKeyAuthenticator(Protocol):
    """Authenticates the ``9B`` key on ``session`` with ``algorithm`` from the configured sources
    (``card.mgmtkey.authenticate_with_configured_key``). ``token`` gives the GUID for a diversified key
    (:meth:`PivToken.card_identity`, read once per run).

    Raises:
        ManagementKeyError, ConfigError, CardRemovedError.
    """

    def __call__(self, token: PivToken, algorithm: ManagementKeyAlgorithm) -> object: ...


@dataclass(frozen=True)
class PivWriteAccess:
    """How a PIV token gets write access, and how much its certificate objects hold."""

    authenticate: ManagementKeyAuthenticator
    algorithm: ManagementKeyAlgorithm = ManagementKeyAlgorithm.TDES
    """The configured ``9B`` algorithm; the card's GET METADATA answer beats it (F14)."""
    max_certificate_bytes: int = DEFAULT_MAX_CERTIFICATE_BYTES


class PivToken:
    """A PIV card through our APDUs.

    Args:
        session: the card session (this token does not close its transport).
        access: write access (management key, certificate capacity); None: a read-only token
            (:meth:`log_in_admin` raises ManagementKeyError).
    """

    def __init__(self, session: PivSession, access: PivWriteAccess | None = None) -> None:
        self.session = session
        self.access = access
        self._identity: CardIdentity | None = None
        self._identity_read = False
        self._pin: Secret | None = None
        self._verified_at: int | None = None
        """``calls`` right after our last successful VERIFY: while nothing else was sent since, that
        VERIFY is still the one "immediately before" a PIN-always operation (F08)."""

    # -- who ---------------------------------------------------------------------------------
    @property
    def info(self) -> TokenInfo:
        """``"PIV card"``, its GUID once read (:meth:`card_identity`), one key per slot."""
        serial = self._identity.guid.hex().upper() if self._identity is not None else ""
        return TokenInfo(TokenInterface.PIV, PIV_LABEL, "", "", serial, False, self.session.transport.name)

    @property
    def calls(self) -> int:
        """APDUs sent on this connection (``ApduProtocol.apdus_sent``)."""
        return self.session.protocol.apdus_sent

    # -- reading -----------------------------------------------------------------------------
    def start(self) -> set[KeyType] | None:
        """SELECT the PIV application; the algorithms its Application Property Template lists (None: none).

        Raises:
            ApduError: ``6A 82``, no PIV application; CardRemovedError.
        """
        self._identity, self._identity_read = None, False  # a new transaction: the card may have changed
        return parse_supported_key_types(self.session.select())

    def card_identity(self) -> CardIdentity | None:
        """The CHUID's GUID and expiry (read once after :meth:`start`); None: no CHUID or unreadable.

        Raises:
            CardRemovedError.
        """
        if not self._identity_read:
            try:
                chuid = self.session.read_chuid()
            except CardRemovedError:
                raise
            except CardError:
                chuid = None
            self._identity = CardIdentity(chuid.guid, chuid.guid_text, chuid.expiry) if chuid is not None else None
            self._identity_read = True
        return self._identity

    def key_refs(self) -> list[KeyRef]:
        """The four PIV slots (SP 800-73-4 Part 1 Table 4b), no APDU."""
        return [KeyRef.piv(slot) for slot in Slot]

    def certificate(self, ref: KeyRef) -> TokenCertificate:
        """GET DATA of the slot's certificate object; a broken object gives ``error`` (F15), never an exception.

        Raises:
            CardRemovedError.
        """
        from cryptography.hazmat.primitives.serialization import Encoding

        sc = self.session.read_certificate(ref.piv_slot)
        raw = sc.certificate.public_bytes(Encoding.DER) if sc.certificate is not None else None
        return TokenCertificate(ref, sc.certificate, raw, sc.error, None, sc.note)

    def certificates(self) -> list[TokenCertificate]:
        """The certificates in the four slots (empty slots left out), in slot order."""
        found = [self.certificate(ref) for ref in self.key_refs()]
        return [c for c in found if c.certificate is not None or c.error is not None]

    def public_key(self, ref: KeyRef) -> PublicKeyTypes | None:
        """The slot key's public key from GET METADATA (Yubico); None on plain PIV cards or an empty slot."""
        return self.session.get_slot_public_key(ref.piv_slot)

    def pin_tries_left(self) -> int | None:
        """Empty VERIFY (SP 800-73-4 Part 2 §3.2.1): tries left, 0 when blocked, None when verified now."""
        try:
            return self.session.get_pin_retries()
        except PinBlockedError:
            return 0

    # -- access ------------------------------------------------------------------------------
    def log_in(self, pin: Secret) -> None:
        """VERIFY the PIN; keep a reference to it for PIN-always operations (the caller wipes it).

        Raises:
            PinFormatError, InvalidPinError, PinBlockedError, CardRemovedError.
        """
        self.session.verify_pin(pin)
        self._pin = pin
        self._verified_at = self.calls

    def log_in_admin(self) -> None:
        """Management-key authentication; the card's metadata names the algorithm before the
        configuration does (F14).

        Raises:
            ManagementKeyError (no write access given, or no source's key accepted), ConfigError,
            CardRemovedError, ApduError.
        """
        if self.access is None:
            raise ManagementKeyError("no management key is configured for this card")
        algorithm = management_key_algorithm(self.access.algorithm, self.session.get_management_key_algorithm())
        self.access.authenticate(self, algorithm)

    def _as_admin(self, command: Callable[[], T]) -> T:
        """Send a command that needs the management key. The authentication lasts for the card
        session; only a ``69 82`` answer (the card forgot it) authenticates once more and sends the
        command again — the refused command changed nothing."""
        try:
            return command()
        except ApduError as exc:
            if not management_key_forgotten(exc.sw):
                raise
        self.log_in_admin()
        return command()

    def _pin_always(self, slot: Slot) -> None:
        """VERIFY before a private-key operation of a PIN-always slot, unless our VERIFY was the
        last command sent (F08); the operation that follows uses it up."""
        if not pin_always(slot) or self._pin is None:
            return
        if self._verified_at is None or self._verified_at != self.calls:
            self.log_in(self._pin)
        self._verified_at = None

    # -- keys and objects --------------------------------------------------------------------
    def generate_key(self, ref: KeyRef, key_type: KeyType) -> PublicKeyTypes:
        """GENERATE ASYMMETRIC KEY PAIR in the slot (destroys its old key); needs :meth:`log_in_admin`.

        Raises:
            NotSupportedError (F13, nothing changed), ApduError, ManagementKeyError.
        """
        slot = ref.piv_slot
        return self._as_admin(lambda: self.session.generate_key(slot, key_type))

    def sign(self, ref: KeyRef, key_type: KeyType, message: bytes) -> bytes:
        """SHA-256 signature by the slot's key (VERIFY first on 9C, F08).

        Raises:
            ApduError: ``69 82`` not logged in, ``6A 80``/``6A 88`` no key of this type.
        """
        slot = ref.piv_slot
        self._pin_always(slot)
        return self.session.sign(slot, key_type, message)

    def decipher(self, ref: KeyRef, block: bytes) -> bytes:
        """Raw RSA on a 256-byte block with the slot's key (VERIFY first on 9C, F08)."""
        slot = ref.piv_slot
        self._pin_always(slot)
        return self.session.rsa_decipher(slot, block)

    def write_certificate(self, ref: KeyRef, der: bytes, label: str) -> None:
        """PUT DATA of the slot's certificate object (``label`` is not stored: a PIV slot's name is fixed).

        Raises:
            CertificateTooLargeError: it fits neither plain nor compressed, or the card's own
                capacity is smaller (F05); nothing was written.
            ApduError, ManagementKeyError.
        """
        from card.certificates import fit_certificate_object

        slot = ref.piv_slot
        limit = self.access.max_certificate_bytes if self.access is not None else DEFAULT_MAX_CERTIFICATE_BYTES
        value = fit_certificate_object(der, limit)
        try:
            self._as_admin(lambda: self.session.put_data(slot.object_id, value))
        except ApduError as exc:
            if certificate_too_large(exc.sw):
                raise CertificateTooLargeError(
                    f"slot {slot.hex}: certificate too large for this card ({len(der)} bytes; the card answered "
                    f"{exc.sw:04X})") from exc
            raise

    def delete(self, ref: KeyRef) -> None:
        """Not on a PIV card: a slot always holds its one key. Raises NotSupportedError."""
        raise NotSupportedError(f"a PIV card cannot delete the key in slot {ref.hex}")

    def relabel(self, ref: KeyRef, label: str) -> None:
        """Not on a PIV card: slot names are fixed. Raises NotSupportedError."""
        raise NotSupportedError(f"a PIV card cannot rename slot {ref.hex}")

    def close(self) -> None:
        """Forget the PIN reference; the transport stays open (its owner closes it)."""
        self._pin = None
        self._verified_at = None



if TYPE_CHECKING:
    from card.token.base import Token

    def _a_piv_token_is_a_token(token: PivToken) -> Token:  # mypy proves PivToken has the whole protocol
        return token
