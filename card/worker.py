"""One reader's worker (DESIGN §2): a thread that owns the reader connection and runs every card
operation one at a time, in one card transaction each; and the card-presence watcher.

Only the door (:mod:`card.service`) queues work here; the TUI and the CLI use the door.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from card.errors import CardBusyError, CardRemovedError, ReaderUnavailableError
from card.piv import PivSession
from card.transport import CardTransport

logger = logging.getLogger(__name__)
T = TypeVar("T")


class CardService:
    """One reader's worker: runs card operations one at a time on its own thread, and watches
    whether the card is present. The door (:class:`card.service.CardDoor`) has one per reader.

    Args:
        transport_factory: opens a connection to the card (called on the worker thread).
        presence: returns whether the card is present (polled by the watcher thread).
        poll_interval_s: seconds between two presence polls.
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
        session, transport = self._session, self._transport
        assert transport is not None
        try:
            with transport.transaction():
                return fn(session)
        except CardBusyError:
            raise  # not granted in time (tester F-7): the connection is sound; dropping it could wait for the other
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
        """Queue ``fn(session)`` on the card thread, in one card transaction. The future raises
        what ``fn`` raised. (The door's operations use it; the TUI and the CLI use the door.)

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
        presence = self._presence
        if presence is None or self._watcher is not None:
            return

        def poll() -> tuple[bool, int]:
            try:
                state = presence()
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
                    self._cancel_queued()
                self._queue.put(None)  # after the current (and any kept) call: disconnect, end
        worker = self._worker
        if worker is None:
            return True
        if wait and worker is not threading.current_thread():
            worker.join(timeout_s)
        return not worker.is_alive()

    def _cancel_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[0].cancel()
