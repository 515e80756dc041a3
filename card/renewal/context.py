"""What one renewal needs besides the card session, and the one way the engine calls the issuer
(bounded retries with back-off, cancel-aware)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from card.background import thread_during
from card.config import Settings
from card.enrollment.base import Issuer, IssuerUnavailable
from card.errors import OperationCancelled
from card.journal import AuditLog, JournalStore
from card.renewal.model import CardSummary
from card.renewal.results import NullReporter, RenewalReporter, SlotResult

T = TypeVar("T")


@dataclass
class RenewalContext:
    """What one renewal needs besides the card session. Holds the PIN for this run only (memory)."""

    settings: Settings
    issuer: Issuer
    journals: JournalStore
    audit: AuditLog
    reporter: RenewalReporter = field(default_factory=NullReporter)
    cancel: threading.Event = field(default_factory=threading.Event)
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.timezone.utc))
    issuer_retry_delays_s: tuple[float, ...] = (1.0, 3.0, 9.0)
    """Back-off between retries when the CA is unavailable (seconds); then the error path."""
    between_slots: Callable[[SlotResult], bool] = field(default=lambda result: True)
    """Called on the worker thread after each renewed certificate but the last (the portal's
    *Next*); returning False stops before the next certificate is touched."""
    card: CardSummary | None = None
    """The card as the engine read it in this run (set once read, before the PIN is sent): names
    the card and the holder in the run's audit records (a wrong PIN, a stop) when the caller did
    not read the card itself."""

    @property
    def holder(self) -> str | None:
        """The holder's name as the engine read it, for the run's audit records (None: not read yet)."""
        return self.card.holder if self.card is not None else None



def ask_ca(ctx: RenewalContext, call: Callable[[], T]) -> T:
    """Call the issuer; retry ``IssuerUnavailable`` with back-off (``ctx.issuer_retry_delays_s``,
    bounded, cancel-aware) — unless a retry cannot help (``retry_helps`` False: a reply over
    ``issuer.max_response_bytes``).

    Raises:
        IssuerUnavailable: still unavailable after the last retry.
        OperationCancelled: ``ctx.cancel`` was set during a back-off.
        IssuerError: any other issuer error, at once.
    """
    delays = ctx.issuer_retry_delays_s
    for attempt in range(len(delays) + 1):
        try:
            return call()
        except IssuerUnavailable as exc:
            if attempt == len(delays) or not exc.retry_helps:  # e.g. a reply too large will not shrink
                raise
            if ctx.cancel.wait(delays[attempt]):  # SIGTERM/SIGINT during the back-off: stop now
                raise OperationCancelled(f"stopped while waiting to ask the certificate authority again ({exc})") from exc
    raise AssertionError("unreachable")


@contextmanager
def cancel_also(trigger: threading.Event, target: threading.Event) -> Iterator[None]:
    """While the block runs, ``trigger`` being set sets ``target`` too (the issuer's own token, which
    ends an HTTP request in flight); when the block ends, ``target`` is cleared again if this set it.

    For a wait the user may stop (Escape at *Contacting the certificate authority…*, tester F-6) on an
    issuer whose token belongs to the whole program: stopping this one wait must not stop the next.
    A ``target`` set by someone else (a signal) is left set.
    """
    ours = threading.Event()

    def follow(done: threading.Event) -> None:
        while not done.is_set():
            if trigger.wait(0.1) and not done.is_set():
                if not target.is_set():
                    ours.set()
                    target.set()
                return

    try:
        with thread_during(follow, "cancel-also"):
            yield
    finally:
        if ours.is_set():
            target.clear()
