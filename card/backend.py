"""Assembly: the door (:class:`card.service.CardDoor`) on a PC/SC reader or the demo card, with
its issuer, journal store and audit log. ``card.demo`` builds the demo's; :func:`pcsc_backend`
the PC/SC one. Nothing else in the program decides which card or which issuer is used.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from card.config import Settings
from card.errors import CardRemovedError, NoCardError, NotSupportedError, PinBlockedError, ReaderUnavailableError
from card.journal import AuditLog, JournalStore, flush_kept_audit
from card.service import CardDoor, CardService
from card.transport import CardTransport

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # the issuers import cryptography; the TUI builds them after its first frame
    from card.enrollment.base import Issuer
    from card.secret import Secret
    from card.token import Token


@dataclass
class Backend(CardDoor):
    """Everything the UI and CLI need to work on a card: the door's operations (inherited from
    :class:`~card.service.CardDoor`) on the current reader's service, with the issuer, journal and audit."""

    settings: Settings
    service: CardService
    issuer: Issuer
    journals: JournalStore
    audit: AuditLog
    reader_name: str
    demo: bool = False
    demo_pin: str | None = None
    reader_lister: Callable[[], list[tuple[str, bool]]] | None = None
    """Lists the PC/SC readers as ``[(name, has_card)]`` (None: one fixed card, e.g. the demo)."""
    service_factory: Callable[[str], CardService] | None = None
    """Builds the card service for a reader name (None: the reader cannot be switched)."""
    reader_fixed: bool = False
    """The reader was named (``--reader``, ``reader =``, or chosen by the user): never switch on our own."""
    cancel_event: threading.Event = field(default_factory=threading.Event)
    """Set by :meth:`~card.service.CardDoor.cancel`: ends the issuer's and the card connection's waits."""

    @property
    def can_switch_reader(self) -> bool:
        return self.reader_lister is not None and self.service_factory is not None

    def list_readers(self) -> list[tuple[str, bool]]:
        """The readers and whether each holds a card (blocking: call it off the UI thread).

        Raises:
            ReaderUnavailableError: pcscd is not running or refuses us.
        """
        if self.reader_lister is None:
            return [(self.reader_name, True)]
        return self.reader_lister()

    def switch_reader(self, name: str) -> CardService:
        """Use the reader ``name`` from now on: a new card service; the old one is shut down
        without waiting (its queued work finishes on its own thread, then it disconnects).

        Returns:
            The new service (also ``self.service``); its watcher is not started.
        """
        if self.service_factory is None:
            raise ValueError("this backend has one fixed card; its reader cannot be switched")
        old, self.service = self.service, self.service_factory(name)
        self.reader_name = name
        old.shutdown(wait=False)
        return self.service


def build_issuer(settings: Settings, window_days: int | None = None, cancel: threading.Event | None = None) -> Issuer:
    """The issuer named by the configuration (:func:`card.enrollment.registry.make_issuer`; this
    name is what :func:`pcsc_backend` calls, and what tests replace). ``cancel``, when set, ends
    the issuer's waits (SCEP: HTTP replies, the RA hook, the PENDING poll) with OperationCancelled.

    Raises:
        ConfigError: unknown type or missing directory; IssuerUnavailable: cannot be opened.
    """
    from card.enrollment.registry import make_issuer

    return make_issuer(settings, window_days, cancel)


def pcsc_service(name: str, cancel: threading.Event | None = None) -> CardService:
    """The card service on the PC/SC reader ``name`` ("" when there is no reader yet: every call
    then fails with NoCardError and the card is never present). ``cancel``, when set, ends a wait
    for another program's hold on the card (OperationCancelled)."""
    from card import pcsc

    if not name:
        def no_reader() -> CardTransport:
            raise NoCardError("no card reader is connected")

        return CardService(no_reader, lambda: False)
    return CardService(lambda: pcsc.PcscTransport(name, cancel=cancel), lambda: pcsc.card_present(name))


def audit_log(settings: Settings) -> AuditLog:
    """The audit log of ``settings``' state directory, sending each record to the system log too
    when ``[audit] syslog = true`` (:mod:`card.journal.audit_syslog`)."""
    forward = None
    if settings.audit.syslog:
        from card.journal.audit_syslog import SyslogForwarder

        forward = SyslogForwarder(settings.audit.syslog_socket, settings.audit.facility_code)
    return AuditLog(settings.state_dir / "audit.log", forward=forward)


def pcsc_backend(settings: Settings, reader: str | None = None, *, with_issuer: bool = True,
                 wait_for_card: bool = False, cancel: threading.Event | None = None) -> Backend:
    """A backend on a PC/SC reader (``reader`` or the one holding the only card).

    ``with_issuer=False`` (read-only use such as ``status``) does not open the CA; ``issuer`` is then None.
    ``wait_for_card=True`` (the TUI) does not fail when no reader is named and no card, several
    cards or no reader at all are found: it takes the first reader holding a card, else the first
    reader, else none ("") — the logon pane then asks for the card and follows the readers.
    ``cancel`` (the CLI's signal handler sets it) ends the issuer's and the card connection's waits;
    it is the backend's ``cancel_event`` (:meth:`~card.service.CardDoor.cancel` sets it).

    Raises:
        ReaderUnavailableError: the named reader is not there, or pcscd is not running (unless
            ``wait_for_card``); NoCardError: no card, or several cards (unless ``wait_for_card``).
    """
    from card import pcsc

    cancel = cancel if cancel is not None else threading.Event()
    named = reader or settings.reader
    try:
        name = pcsc.choose_reader(named)
    except (NoCardError, ReaderUnavailableError):
        if named or not wait_for_card:
            raise
        try:
            readers = pcsc.list_readers()
        except ReaderUnavailableError:
            readers = []
        with_card = [r for r, present in readers if present]
        name = (with_card or [r for r, _ in readers] or [""])[0]
    issuer = build_issuer(settings, cancel=cancel) if with_issuer else None
    audit = audit_log(settings)
    journals = JournalStore(settings.state_dir, audit)
    flush_kept_audit(journals, audit)  # records an earlier run could not write go in first
    return Backend(settings, pcsc_service(name, cancel), issuer, journals, audit, name,  # type: ignore[arg-type]  # None only with with_issuer=False (status)
                   reader_lister=pcsc.list_readers, service_factory=lambda n: pcsc_service(n, cancel),
                   reader_fixed=bool(named), cancel_event=cancel)


class TokenService(CardService):
    """The card worker on a token that is not reached through our APDUs (a PKCS#11 token, issue 14):
    the door's operations get the :class:`~card.token.Token` itself (``read_card`` and the engine
    take a Token; ``log_on``/``tries_left`` ask it through the protocol). The token is opened on the
    card thread at first use and kept (its login lasts for the session) until log off or a removal.

    Args:
        token_factory: opens the token (``Pkcs11Token(...)``), on the card thread.
        presence: returns whether the token is present (SoftHSM2: always).
    """

    def __init__(self, token_factory: Callable[[], Token], presence: Callable[[], bool] | None = None) -> None:
        def no_transport() -> CardTransport:
            raise NoCardError("this token is not reached through a card transport")

        super().__init__(no_transport, presence)
        self._token_factory = token_factory
        self._token: Token | None = None

    def _run(self, fn):  # type: ignore[no-untyped-def]  # CardService._run's PivSession is a Token here (the door tells them apart)
        if self._token is None:
            self._token = self._token_factory()
        try:
            return fn(TokenSession(self._token))
        except (CardRemovedError, ReaderUnavailableError):
            self._disconnect()
            raise

    def _disconnect(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                token.close()
            except Exception:  # noqa: BLE001 - the token is gone; closing may fail too
                logger.debug("closing the token failed", exc_info=True)

    @property
    def apdu_count(self) -> int:
        """PKCS#11 function calls made on the open token (``Token.calls``)."""
        return self._token.calls if self._token is not None else 0


class TokenSession:
    """A token (PKCS#11) in the place of a PIV session, for the door's operations: what the door asks
    of a PIV card is answered through the :class:`~card.token.Token` protocol (SELECT → ``start``,
    VERIFY → ``log_in``, the PIN tries → ``pin_tries_left``); every Token member is the token's own,
    so ``read_card`` and the engine take it as the token it is."""

    def __init__(self, token: Token) -> None:
        self.token = token

    def __getattr__(self, name: str) -> Any:
        return getattr(self.token, name)

    def select(self) -> None:
        self.token.start()

    def verify_pin(self, pin: Secret) -> None:
        """``C_Login``: the token keeps its login for the session (until log off)."""
        self.token.log_in(pin)

    def get_tries_left(self, reference: int) -> int | None:
        """The PIN's tries as the token's flags say them (0 locked, 1 final try, else None); the PUK: None."""
        from card.piv import KEY_REF_PIN

        return self.token.pin_tries_left() if reference == KEY_REF_PIN else None

    def get_pin_retries(self) -> int | None:
        left = self.token.pin_tries_left()
        if left == 0:
            raise PinBlockedError("The PIN is blocked.")
        return left

    def change_pin(self, pin: Secret, new_pin: Secret) -> None:
        raise NotSupportedError("cardrenew changes the PIN of PIV cards only; change this token's PIN with its own "
                                "tool (e.g. pkcs11-tool --change-pin)")

    def reset_retry(self, puk: Secret, new_pin: Secret) -> None:
        raise NotSupportedError("cardrenew unblocks the PIN of PIV cards only; unblock this token with its own "
                                "tool (e.g. pkcs11-tool --init-pin --login --login-type so)")


def pkcs11_token_factory(settings: Settings, *, read_only: bool = False) -> Callable[[], Token]:
    """Opens the token ``[card]`` names (``module``, ``token_label``, ``token_serial``) as a
    :class:`card.pkcs11.Pkcs11Token`. A PKCS#11 module over a PIV card that writes only as security
    officer (libykcs11) gets the management key of the ``default`` or ``file`` source.

    Raises (when called): ModuleLoadError, TokenNotFoundError, SeveralTokensError (card.pkcs11).
    """
    token_settings = settings.token
    assert token_settings.module is not None  # the configuration requires it with interface = "pkcs11"

    def open_token() -> Token:
        from card.pkcs11 import Pkcs11Token

        admin_key = (settings.management_key() if settings.management_key_source in ("default", "file") else None)
        return Pkcs11Token(token_settings.module, token_settings.token_label, token_settings.token_serial,  # type: ignore[arg-type]  # checked above
                           admin_key=admin_key, read_only=read_only)

    return open_token


def pkcs11_backend(settings: Settings, *, with_issuer: bool = True, cancel: threading.Event | None = None,
                   token_factory: Callable[[], Token] | None = None) -> Backend:
    """A backend on the PKCS#11 token of ``[card] interface = "pkcs11"`` (no PC/SC reader needed
    for a software token such as SoftHSM2; a module over a card, such as libykcs11, finds the
    reader itself). The reader's name shown is the module's slot description, once read.

    ``token_factory`` (tests) replaces :func:`pkcs11_token_factory`.
    """
    cancel = cancel if cancel is not None else threading.Event()
    issuer = build_issuer(settings, cancel=cancel) if with_issuer else None
    audit = AuditLog(settings.state_dir / "audit.log")
    journals = JournalStore(settings.state_dir, audit)
    flush_kept_audit(journals, audit)
    factory = token_factory or pkcs11_token_factory(settings)
    name = f"PKCS#11 module {settings.token.module}"
    return Backend(settings, TokenService(factory, lambda: True), issuer, journals, audit, name,  # type: ignore[arg-type]  # None only with with_issuer=False (status)
                   reader_fixed=True, cancel_event=cancel)


def card_backend(settings: Settings, reader: str | None = None, *, with_issuer: bool = True,
                 wait_for_card: bool = False, cancel: threading.Event | None = None) -> Backend:
    """The backend ``[card] interface`` asks for: :func:`pkcs11_backend` or :func:`pcsc_backend`.

    Raises:
        UsageError: ``--reader`` with a PKCS#11 token (the module finds its token).
    """
    if settings.token.is_pkcs11:
        if reader:
            from card.config import UsageError

            raise UsageError("--reader names a PC/SC reader; with card.interface = \"pkcs11\" the module finds "
                             "its token (card.token_label / card.token_serial choose one)")
        return pkcs11_backend(settings, with_issuer=with_issuer, cancel=cancel)
    # only what the caller gave (tests replace pcsc_backend with narrower signatures, as callers used to call it)
    given: dict[str, Any] = {k: v for k, v in (("with_issuer", with_issuer), ("wait_for_card", wait_for_card),
                                               ("cancel", cancel)) if v is not None and v != (k == "with_issuer")}
    return pcsc_backend(settings, reader, **given)
