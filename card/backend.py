"""Assembly: the door (:class:`card.service.CardDoor`) on a PC/SC reader or the demo card, with
its issuer, journal store and audit log. ``card.demo`` builds the demo's; :func:`pcsc_backend`
the PC/SC one. Nothing else in the program decides which card or which issuer is used.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from card.config import Settings
from card.errors import NoCardError, ReaderUnavailableError
from card.journal import AuditLog, JournalStore, flush_kept_audit
from card.service import CardDoor, CardService
from card.transport import CardTransport

if TYPE_CHECKING:  # the issuers import cryptography; the TUI builds them after its first frame
    from card.enrollment.base import Issuer


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

    def reach_ca(self, cancel: threading.Event) -> None:
        """Preflight's CA reachability *before* the card transaction (DESIGN §3 step 1; break-it finding
        1): the issuer's CA certificates (SCEP GetCACert) with the engine's retries and back-off, so a CA
        that does not answer holds no card. The issuer keeps them, and the engine's own check then
        needs no network. Blocking: call it off the UI thread, never on the card thread.

        Raises:
            IssuerError (IssuerUnavailable ``CA-DOWN``/``CA-TIMEOUT``, ``CA-TOO-LARGE``, IssuerRejected),
            OperationCancelled: ``cancel`` was set during a wait.
        """
        from card.renewal.context import RenewalContext, ask_ca

        ctx = RenewalContext(self.settings, self.issuer, self.journals, self.audit, cancel=cancel)
        ask_ca(ctx, self.issuer.ca_certificates)

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
