"""The card service (DESIGN §2): one worker thread owns the reader connection and runs every
card operation, whichever pane or command asked for it; plus a card-presence watcher.

Callers submit a function of a :class:`PivSession` and get a ``concurrent.futures.Future``;
the TUI awaits it with ``asyncio.wrap_future``, the CLI with ``.result()``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from card.config import Settings
from card.errors import CardRemovedError, NoCardError, ReaderUnavailableError
from card.journal import AuditLog, JournalStore, flush_kept_audit
from card.piv import PivSession
from card.transport import CardTransport

if TYPE_CHECKING:  # the issuers import cryptography; the TUI builds them after its first frame
    from card.enrollment.base import Issuer

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Once(Generic[T]):
    """A value made by ``make()`` the first time :meth:`get` is called, on whichever thread calls it
    first; other threads wait for it. A failure is raised to that caller and ``make`` is tried again
    at the next call.

    The TUI uses it to make what is slow to make (an issuer, the demo's virtual card with its RSA
    keys) on a worker thread after the first frame instead of before it (issue 7).
    """

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._value: T | None = None
        self._made = False

    @property
    def made(self) -> bool:
        """True once the value exists (never blocks)."""
        return self._made

    def get(self) -> T:
        """The value, made now if it was not yet (blocks while another thread makes it)."""
        if self._made:
            return self._value  # type: ignore[return-value]
        with self._lock:
            if not self._made:
                self._value = self._make()
                self._made = True
        return self._value  # type: ignore[return-value]


class LazyIssuer:
    """An :class:`~card.enrollment.base.Issuer` made on first use (``Once``): every attribute is
    the made issuer's, so the renewal engine cannot tell the difference. The first use is on the
    card thread (the renewal asks for the CA certificates), never before the TUI's first frame."""

    def __init__(self, make: Callable[[], Issuer] | Once[Issuer]) -> None:
        self._once = make if isinstance(make, Once) else Once(make)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_once":
            raise AttributeError(name)
        return getattr(self._once.get(), name)


class CardService:
    """Runs card operations one at a time on its own thread.

    Args:
        transport_factory: opens a connection to the card (called on the worker thread).
        presence: returns whether the card is present (polled by the watcher thread).
    """

    def __init__(self, transport_factory: Callable[[], CardTransport],
                 presence: Callable[[], bool | tuple[bool, int]] | None = None,
                 poll_interval_s: float = 0.5) -> None:
        self._factory = transport_factory
        self._presence = presence
        self._poll_interval_s = poll_interval_s
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._transport: CardTransport | None = None
        self._session: PivSession | None = None
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _run(self, fn: Callable[[PivSession], T]) -> T:
        if self._session is None:
            self._transport = self._factory()
            self._session = PivSession(self._transport)
        session = self._session
        try:
            with self._transport.transaction():  # type: ignore[union-attr]
                return fn(session)
        except (CardRemovedError, ReaderUnavailableError):
            self._disconnect()
            raise
        finally:
            if session.protocol.card_removed:  # e.g. renew() reported a pull in its result
                self._disconnect()

    def _disconnect(self) -> None:
        transport, self._transport, self._session = self._transport, None, None
        if transport is not None:
            try:
                transport.close()
            except Exception:  # noqa: BLE001 - the card is gone; closing may fail too
                logger.debug("closing the card connection failed", exc_info=True)

    def submit(self, fn: Callable[[PivSession], T]) -> Future[T]:
        """Queue ``fn(session)`` on the card thread. The future raises what ``fn`` raised.

        Raises:
            RuntimeError: the service was shut down.
        """
        return self._queue_call(lambda: self._run(fn))

    def disconnect(self) -> Future[None]:
        """Drop the connection (log off): the card is reset, so the PIN state is gone."""
        return self._queue_call(self._disconnect)

    def _queue_call(self, call: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the card service is shut down")
            if self._worker is None:
                # A daemon thread: the process never waits for it at exit on its own. Whoever ends
                # the process waits for the current card step with ``shutdown(timeout_s=...)``.
                self._worker = threading.Thread(target=self._work, name="card-service", daemon=True)
                self._worker.start()
            self._queue.put((future, call))
        return future

    def _work(self) -> None:
        """The card thread: run queued calls one at a time; disconnect when shut down."""
        while True:
            item = self._queue.get()
            if item is None:
                break
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
                future.set_exception(exc)
            else:
                future.set_result(result)
            del future, call, item  # a finished call's arguments (a PIN) are not kept alive here
        self._disconnect()

    @property
    def apdu_count(self) -> int:
        return self._session.protocol.apdus_sent if self._session else 0

    def watch(self, on_change: Callable[[bool], None]) -> None:
        """Call ``on_change(present)`` from a watcher thread whenever card presence changes.

        ``presence`` may return a bool, or ``(present, insertions)``: a re-insertion between two
        polls (the card was out for less than the poll interval) is then still reported, as a
        removal followed by an insertion.
        """
        if self._presence is None or self._watcher is not None:
            return

        def poll() -> tuple[bool, int]:
            try:
                state = self._presence()  # type: ignore[misc]
            except Exception:  # noqa: BLE001 - keep watching whatever happens (F22)
                return False, -1
            return (bool(state[0]), int(state[1])) if isinstance(state, tuple) else (bool(state), 0)

        def loop() -> None:
            last: tuple[bool, int] | None = None
            while not self._watch_stop.wait(self._poll_interval_s if last is not None else 0):
                current = poll()
                if current == last:
                    continue
                if last is not None and last[0] and current[0]:  # pulled and put back between polls
                    on_change(False)
                if last is None or current[0] != last[0] or current[0]:
                    on_change(current[0])
                last = current

        self._watcher = threading.Thread(target=loop, name="card-watcher", daemon=True)
        self._watcher.start()

    def shutdown(self, *, wait: bool = True, timeout_s: float | None = 30.0,
                 cancel_pending: bool | None = None) -> bool:
        """Stop the watcher, let the current card step finish, disconnect, and end the card thread.

        Never waits for anything but the card thread, so it may be called from any thread (the
        UI's included, with ``wait=False``). Calling it again only waits again.

        Args:
            wait: wait for the current step and the disconnect (False: return at once, e.g. from
                the UI thread when switching readers or while the app closes).
            timeout_s: the longest wait in seconds (None: no limit).
            cancel_pending: cancel the calls queued behind the current one (their futures raise
                ``CancelledError``); default: when ``wait`` (a closing program), not when only
                switching readers (the queued work then finishes on its own thread).

        Returns:
            True when the card thread has ended (or never started); False while it still runs
            (``wait=False``, or the current step outlasted ``timeout_s``).
        """
        self._watch_stop.set()
        cancel = wait if cancel_pending is None else cancel_pending
        with self._lock:
            if not self._closed:
                self._closed = True
                if cancel:
                    while True:
                        try:
                            item = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if item is not None:
                            item[0].cancel()
                self._queue.put(None)  # after the current (and any kept) call: disconnect, end
        worker = self._worker
        if worker is None:
            return True
        if wait and worker is not threading.current_thread():
            worker.join(timeout_s)
        return not worker.is_alive()


@dataclass
class Backend:
    """Everything the UI and CLI need to work on a card: the service, issuer, journal and audit."""

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
    """The issuer named by the configuration. ``cancel``, when set, ends the issuer's waits (SCEP:
    HTTP replies, the RA hook, the PENDING poll) with OperationCancelled.

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


def pcsc_backend(settings: Settings, reader: str | None = None, *, with_issuer: bool = True,
                 wait_for_card: bool = False, cancel: threading.Event | None = None) -> Backend:
    """A backend on a PC/SC reader (``reader`` or the one holding the only card).

    ``with_issuer=False`` (read-only use such as ``status``) does not open the CA; ``issuer`` is then None.
    ``wait_for_card=True`` (the TUI) does not fail when no reader is named and no card, several
    cards or no reader at all are found: it takes the first reader holding a card, else the first
    reader, else none ("") — the logon pane then asks for the card and follows the readers.
    ``cancel`` (the CLI's signal handler sets it) ends the issuer's and the card connection's waits.

    Raises:
        ReaderUnavailableError: the named reader is not there, or pcscd is not running (unless
            ``wait_for_card``); NoCardError: no card, or several cards (unless ``wait_for_card``).
    """
    from card import pcsc

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
    audit = AuditLog(settings.state_dir / "audit.log")
    journals = JournalStore(settings.state_dir, audit)
    flush_kept_audit(journals, audit)  # records an earlier run could not write go in first
    return Backend(settings, pcsc_service(name, cancel), issuer, journals, audit, name,  # type: ignore[arg-type]
                   reader_lister=pcsc.list_readers, service_factory=lambda n: pcsc_service(n, cancel),
                   reader_fixed=bool(named))
