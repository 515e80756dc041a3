"""The card service: the only door to the card (DESIGN §2).

The TUI and the CLI reach the card only through the named operations of :class:`CardDoor` (which
:class:`card.backend.Backend` is), and import from ``card`` only those, the read-model types
re-exported here and the errors (``card.errors``). Each operation queues its card work on the one
worker thread of the current reader (:class:`card.worker.CardService`) and returns a
``concurrent.futures.Future`` at once; the TUI awaits it with ``asyncio.wrap_future``, the CLI
with ``.result()``. A future raises what the card work raised (``card.errors`` and
``card.renewal`` errors; ``RuntimeError`` once the service is shut down).

The door's API (keep it small; the TUI and the CLI both depend on it):

=====================================  =======================================================
``read_card(now=None)``                → ``CardSummary``: CHUID, the slots, the PIN tries left
``log_on(pin)``                        → None: SELECT + VERIFY; the PIN is wiped afterwards
``tries_left("PIN" | "PUK")``          → ``int | None`` without spending a try
``change_pin(pin, new_pin)``           → None: CHANGE REFERENCE DATA; audited; both wiped
``unblock_pin(puk, new_pin)``          → None: RESET RETRY COUNTER; audited; both wiped
``renew(request)``                     → ``RenewalResult``: the renewal engine on this card
``renew_if_due(request)``              → ``(CardSummary, RenewalResult | None)``: read, check,
                                         renew from that reading in one card transaction
``check(request)``                     → ``CheckReport``: the dry run (``renew --check``)
``cancel()``                           stop waits and the renewal at the next safe point
``log_off()``                          → None: drop the connection (the card forgets the PIN)
``watch(on_change)``                   card presence, ``on_change(present)`` from a thread
``close(wait=…, timeout_s=…)``         stop the watcher and the worker (see ``CardService.shutdown``)
=====================================  =======================================================

Progress of a renewal is reported through the callbacks of its :class:`RenewalRequest`
(``progress.step``/``progress.slot_finished`` and ``between_slots``), called on the worker
thread; the TUI turns them into Textual messages (``tui.bridge``), the CLI prints them.

Nothing here imports the renewal engine (and ``cryptography``) until a card is read: the read-model
names below are imported on first use (PEP 562), so the TUI's first frame does not wait for them.
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from card.errors import CardChangedError, CardError, InvalidPinError, PinBlockedError
from card.requests import RenewalRequest
from card.worker import CardService

T = TypeVar("T")

__all__ = [  # the door, and the read-model names it re-exports (made on first use, see __getattr__)
    "CardDoor", "CardService", "RenewalRequest",
    "CardSummary", "KeyType", "RenewalResult", "RenewalStep", "Slot", "SlotResult", "SlotState", "SlotStatus",
    "ProgressKey", "key_name", "UpdateCheck", "card_expiry_words", "check_pin_format", "slot_condition", "update_check", "RenewalRefused",
    "CheckRequest", "CheckItem", "CheckOutcome", "CheckReport",
    "EntryState", "QueueEntry", "ReaderQueue",
]

if TYPE_CHECKING:
    from card.config import Settings
    from card.enrollment.base import Issuer
    from card.journal import AuditLog, JournalStore
    from card.piv import KeyType, PivSession, Slot, check_pin_format
    from card.renewal import (CardSummary, ProgressKey, RenewalRefused, RenewalResult, RenewalStep, SlotResult,
                              SlotState, SlotStatus, UpdateCheck, card_expiry_words, key_name, slot_condition,
                              update_check)
    from card.renewal.check_report import CheckItem, CheckOutcome, CheckReport, CheckRequest
    from card.reader_queue import EntryState, QueueEntry, ReaderQueue
    from card.secret import Secret
    from card.token import Token

logger = logging.getLogger(__name__)

_READ_MODEL = {
    "CardSummary": "card.renewal", "RenewalResult": "card.renewal", "RenewalStep": "card.renewal",
    "SlotResult": "card.renewal", "SlotState": "card.renewal", "SlotStatus": "card.renewal",
    "UpdateCheck": "card.renewal", "card_expiry_words": "card.renewal", "update_check": "card.renewal",
    "slot_condition": "card.renewal", "ProgressKey": "card.renewal", "key_name": "card.renewal",
    "KeyType": "card.piv", "Slot": "card.piv", "check_pin_format": "card.piv",
    "RenewalRefused": "card.renewal",
    **dict.fromkeys(("CheckItem", "CheckOutcome", "CheckReport", "CheckRequest"), "card.renewal.check_report"),
    "EntryState": "card.reader_queue", "QueueEntry": "card.reader_queue", "ReaderQueue": "card.reader_queue",
}
"""The read-model names the TUI and the CLI import from here (made on first use): the read model and its
words, slots and key types, the PIN rule, the engine's refusal, the dry run's report, the renewal queue."""


def __getattr__(name: str) -> Any:
    module = _READ_MODEL.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


PinWhat = Literal["PIN", "PUK"]


class CardDoor:
    """The named card operations (see the module docstring). :class:`card.backend.Backend` is
    one; it supplies the attributes below (the assembly: PC/SC or the demo card, the issuer)."""

    settings: Settings
    service: CardService
    """The current reader's worker (replaced when the reader is switched)."""
    issuer: Issuer | None
    issuer_problem: CardError | None = None
    """Why there is no issuer in a TUI started without a usable ``[issuer]`` configuration: the holder
    can still log on, look at the card and change the PIN; renewing, checking and reaching the CA raise it."""
    journals: JournalStore
    audit: AuditLog
    reader_name: str
    cancel_event: threading.Event
    demo: bool
    """The card is the demo's virtual card."""
    demo_pin: str | None
    """The demo card's PIN, shown on the logon pane (None: not a demo card, or its PIN was changed
    or reset here: it is not the one the demo card was made with any more)."""
    service_factory: Callable[[str], CardService] | None = None
    """Builds the card service for a reader name (None: one fixed card; the assembly says)."""

    @property
    def can_switch_reader(self) -> bool:
        """Another reader can be chosen (PC/SC with a reader list); the assembly says."""
        return False

    # -- reading and logging on -----------------------------------------------------------
    def read_card(self, *, now: dt.datetime | None = None, pin_retries: bool = True) -> Future[CardSummary]:
        """Read the card (no PIN needed): CHUID, the configured slots, an unfinished update, and
        the PIN tries left (``pin_retries=False``: not asked, ``None`` in the summary).

        Future raises: CardRemovedError, NoCardError, ReaderUnavailableError, CardError.
        """
        settings, journals, reader = self.settings, self.journals, self.reader_name

        def read(session: PivSession) -> CardSummary:
            from card.renewal import read_card  # on the card thread: the UI never waits for the import

            return read_card(session, settings, now=now, journals=journals, reader=reader, pin_retries=pin_retries)

        return self.service.submit(read)

    def log_on(self, pin: Secret) -> Future[None]:
        """SELECT PIV and VERIFY ``pin`` (SP 800-73-4 Part 2 §3.2.1); ``pin`` is wiped once the card
        answered. Future raises: PinFormatError (nothing sent), InvalidPinError (with the tries
        left), PinBlockedError, CardRemovedError, NoCardError, CardError."""
        audit = self.audit

        def verify(session: PivSession) -> None:
            from card.renewal.attempts import audit_log_on

            try:
                session.select()
                session.verify_pin(pin)
            except (InvalidPinError, PinBlockedError) as exc:
                audit_log_on(audit, exc)  # every attempt is audited (issue 15); never the PIN
                raise
            finally:
                pin.wipe()

        return self._then_reset(self.service.submit(verify))

    def _then_reset(self, job: Future[T]) -> Future[T]:
        """``job`` (already submitted), with a reset of the card queued right behind it: a PIN the job
        verified does not outlive it, so no program may use the holder's keys while the TUI sits
        logged on (tester F-4; after a renewal too). The dry run queues the same reset (``check``)."""
        self.service.disconnect()
        return job

    def tries_left(self, what: PinWhat = "PIN") -> Future[int | None]:
        """The PIN or PUK tries left, without spending one: GET METADATA where the card answers it;
        else, for the PIN, an empty VERIFY (0 when blocked). None: the card does not say (or the
        PIN is verified: its counter is full)."""
        from card.piv import KEY_REF_PIN, KEY_REF_PUK

        reference = KEY_REF_PIN if what == "PIN" else KEY_REF_PUK

        def ask(session: PivSession) -> int | None:
            session.select()
            left = session.get_tries_left(reference)
            if left is None and what == "PIN":
                try:
                    left = session.get_pin_retries()
                except PinBlockedError:
                    left = 0
            return left

        return self.service.submit(ask)

    # -- PIN changes ----------------------------------------------------------------------
    def change_pin(self, pin: Secret, new_pin: Secret, *, card_guid: str | None = None) -> Future[None]:
        """CHANGE REFERENCE DATA of the PIN (SP 800-73-4 Part 2 §3.2.2). The outcome is audited
        (``change_pin``: changed, wrong_pin, blocked); both secrets are wiped once the card answered.
        Future raises: InvalidPinError, PinBlockedError, PinFormatError, CardRemovedError, CardError."""
        return self._pin_change("change", pin, new_pin, card_guid)

    def unblock_pin(self, puk: Secret, new_pin: Secret, *, card_guid: str | None = None) -> Future[None]:
        """RESET RETRY COUNTER: a new PIN set with the PUK (SP 800-73-4 Part 2 §3.2.3). Audited as
        ``unlock_card`` (changed, wrong_puk, blocked); both secrets are wiped once the card answered.
        Future raises: InvalidPinError (PUK tries left), PinBlockedError (the PUK is blocked), CardError."""
        return self._pin_change("unlock", puk, new_pin, card_guid)

    def _pin_change(self, kind: Literal["change", "unlock"], secret: Secret, new_pin: Secret,
                    card_guid: str | None) -> Future[None]:
        audit = self.audit
        what = "pin" if kind == "change" else "puk"

        def record(outcome: str) -> None:
            # best effort (the card has answered): a record the log cannot take is kept beside it
            if audit.write_quietly(event="change_pin" if kind == "change" else "unlock_card",
                                   card_guid=card_guid, outcome=outcome) is not None:
                logger.warning("could not write the audit log")

        def send(session: PivSession) -> None:
            try:
                session.select()
                if kind == "change":
                    session.change_pin(secret, new_pin)
                else:
                    session.reset_retry(secret, new_pin)
            except InvalidPinError:
                record("wrong_" + what)
                raise
            except PinBlockedError:
                record("blocked")
                raise
            except Exception:  # the card pulled, anything: the attempt is audited too
                record("failed")
                raise
            finally:
                secret.wipe()
                new_pin.wipe()
            record("changed")
            self.demo_pin = None  # the demo card's first PIN is no longer its PIN

        return self.service.submit(send)

    # -- renewal ----------------------------------------------------------------------------
    def renew(self, request: RenewalRequest) -> Future[RenewalResult]:
        """Run the renewal engine on this card (DESIGN §3): renew every due slot, or resume the
        card's unfinished update. Future raises what ``card.renewal.renew`` raises before anything
        destructive (RenewalRefused, InvalidPinError, PinBlockedError, IssuerError, CardRemovedError,
        LastPinTryError with ``refuse_last_try``); later errors are in the result, per slot."""
        return self._then_reset(self.service.submit(lambda session: self._renew(session, request, None)))

    def renew_if_due(self, request: RenewalRequest) -> Future[tuple[CardSummary, RenewalResult | None]]:
        """Read the card and, when an update is available or an unfinished one is to be resumed,
        renew from that reading in the same card transaction (the card is not read twice, and
        nothing can change it in between). ``request.pin``, when a function, is called only then.

        Returns (future): the card as read, and the renewal's result (None: nothing to do).
        """
        settings, journals, reader = self.settings, self.journals, self.reader_name

        def check_then_renew(session: PivSession) -> tuple[CardSummary, RenewalResult | None]:
            from card.renewal import UpdateCheck, as_token, read_card, update_check
            from card.secret import Secret

            token = as_token(session, settings)  # one token for the reading and the renewal (the CHUID read once)
            summary = read_card(token, settings, journals=journals, reader=reader,
                                pin_retries=False)  # not shown; the engine sends the PIN next
            if request.expect_card is not None and summary.card_id != request.expect_card:
                if isinstance(request.pin, Secret):
                    request.pin.wipe()
                raise CardChangedError(f"the card in {reader} is not the one the PIN was typed for")
            if update_check(summary) not in (UpdateCheck.AVAILABLE, UpdateCheck.RESUME):
                return summary, None
            return summary, self._renew(token, request, summary)

        return self._then_reset(self.service.submit(check_then_renew))

    def _renew(self, card: Token | PivSession, request: RenewalRequest, summary: CardSummary | None) -> RenewalResult:
        from card.renewal import NullReporter, RenewalContext, as_token, renew
        from card.secret import Secret

        pin = request.pin if isinstance(request.pin, Secret) else None
        token = as_token(card, self.settings)
        try:
            if request.refuse_last_try:
                from card.renewal.attempts import refuse_last_try

                refuse_last_try(token)
            if pin is None:
                assert not isinstance(request.pin, Secret)
                pin = request.pin()
            ctx = RenewalContext(self.settings, self._need_issuer(), self.journals, self.audit,
                                 reporter=request.progress or NullReporter(),
                                 cancel=request.cancel or self.cancel_event)
            if request.now is not None:
                ctx.now = request.now
            if request.between_slots is not None:
                ctx.between_slots = request.between_slots
            from card.renewal.attempts import run_audited

            ctx.card = summary  # the card as the caller read it; else the engine sets it once it read the card
            return run_audited(self.audit, ctx, lambda: renew(token, ctx, pin, summary=summary))
        finally:
            if pin is not None:
                pin.wipe()  # (renew wipes it too; the guard may refuse before)

    def check(self, request: CheckRequest) -> Future[CheckReport]:
        """The dry run (:func:`card.renewal.check_start.start_check`): every check a renewal makes first,
        each passed, failed or skipped; nothing on the card changes. Future raises: CardRemovedError,
        NoCardError, ReaderUnavailableError, OperationCancelled."""
        from card.renewal.check_start import start_check

        if request.issuer_error is None and self.issuer is None:
            request.issuer_error = self.issuer_problem  # the CA check reports the configuration error
        return start_check(self.settings, self.issuer, self.journals, self.audit, self.service.submit, request,
                           self.cancel_event, reset=self.service.disconnect)

    def reach_ca(self, cancel: threading.Event) -> None:
        """The issuer's CA certificates *before* the card's transaction, with the engine's retries
        (break-it 1, tester F-6): a CA that does not answer holds no card. Blocking: call it off the
        UI thread. Raises IssuerError, OperationCancelled (``cancel`` set during a wait)."""
        from card.renewal.context import RenewalContext, ask_ca, cancel_also

        issuer = self._need_issuer()
        with cancel_also(cancel, issuer.cancel):  # Escape ends the HTTP request in flight too (F-6)
            ask_ca(RenewalContext(self.settings, issuer, self.journals, self.audit, cancel=cancel), issuer.ca_certificates)

    def _need_issuer(self) -> Issuer:
        """The issuer. Raises :attr:`issuer_problem` (a ConfigError naming the file to fix) when there is none."""
        if self.issuer is None:
            raise self.issuer_problem or RuntimeError("this door was made without an issuer (read-only use)")
        return self.issuer

    def cancel(self) -> None:
        """Stop at the next safe point (never waits): a renewal stops before its next certificate;
        a wait for the CA's reply, the RA hook, a back-off, a PENDING poll or another program's
        hold on the card ends with ``OperationCancelled``."""
        self.cancel_event.set()

    # -- the connection and the card's presence -----------------------------------------------
    def log_off(self) -> Future[None]:
        """Drop the connection: the card is reset, so it forgets the verified PIN."""
        return self.service.disconnect()

    def watch(self, on_change: Callable[[bool], None]) -> None:
        """Report card presence of the current reader: ``on_change(present)`` from a watcher
        thread. Reports still arriving from a reader switched away from are dropped."""
        service = self.service

        def changed(present: bool) -> None:
            if service is self.service:
                on_change(present)

        service.watch(changed)

    def close(self, *, wait: bool = True, timeout_s: float | None = 30.0, cancel_pending: bool | None = None) -> bool:
        """Shut the current reader's worker down (:meth:`CardService.shutdown`, same arguments and
        result), and the workers of the doors made by :meth:`reader_door`."""
        ended = self.service.shutdown(wait=wait, timeout_s=timeout_s, cancel_pending=cancel_pending)
        for door in list(self.__dict__.get("_reader_doors", ())):
            ended = door.close(wait=wait, timeout_s=timeout_s, cancel_pending=cancel_pending) and ended
        return ended

    # -- several readers at once (the renewal queue, issue 15) --------------------------------
    def list_readers(self) -> list[tuple[str, bool]]:
        """The readers and whether each holds a card, ``[(name, has_card)]`` (blocking; the
        assembly lists PC/SC's). Here: this door's one reader, with a card.

        Raises:
            ReaderUnavailableError: pcscd is not running or refuses us.
        """
        return [(self.reader_name, True)]

    def reader_door(self, name: str) -> CardDoor:
        """A door on the reader ``name`` with a card worker of its own, beside this one: the same
        settings, issuer, journal store, audit log and cancellation token (:meth:`cancel` stops
        every door made here). Its operations run concurrently with other readers' doors (one
        thread per reader). :meth:`close` on this door also closes it; close it alone when the
        reader is gone.

        Raises:
            ValueError: this door has one fixed card (the demo): no other reader can be opened.
        """
        if self.service_factory is None:
            raise ValueError("this door has one fixed card; no other reader can be opened")
        door = copy.copy(self)
        door.service = self.service_factory(name)
        door.reader_name = name
        door.demo_pin = None
        door.__dict__["_reader_doors"] = []
        self.__dict__.setdefault("_reader_doors", []).append(door)
        return door

    def forget_reader_door(self, door: CardDoor) -> None:
        """Stop closing ``door`` with this one (it was closed on its own: its reader is gone)."""
        doors = self.__dict__.get("_reader_doors", [])
        doors[:] = [d for d in doors if d is not door]
