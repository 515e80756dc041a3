"""The renewal queue (issue 15): every reader with its card, the holder, what is due and the state
of its renewal; several cards renewed at once, one card worker per reader (:meth:`CardDoor.reader_door`).

Each card's PIN is typed for that card alone: :meth:`ReaderQueue.renew` takes the reader *and* the
card id (GUID) the PIN was asked for, and the door checks that id again in the renewal's own card
transaction before the PIN is sent (``RenewalRequest.expect_card``). A PIN is sent once, to one
card, and wiped when that renewal ends; nothing here keeps it. A pulled card, a reader that
disappears or one card that fails changes only its own entry.

Used by the TUI's *Readers* pane and ``cardrenew queue``, which reach it through ``card.service``.
Callbacks (``on_change``) run on the card worker threads or the polling thread.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from card.errors import (CardChangedError, CardError, CardRemovedError, InvalidPinError, LastPinTryError, NoCardError,
                         PinBlockedError)
from card.queue_entry import EntryState, QueueEntry, error_entry, result_entry, words_entry
from card.secret import Secret
from card.service import CardDoor, RenewalRequest
from card.words import blocked_words, slot_names, tries_left, update_words

if TYPE_CHECKING:
    from card.renewal import CardSummary, ProgressKey, RenewalResult, RenewalStep

logger = logging.getLogger(__name__)
__all__ = ["EntryState", "QueueEntry", "ReaderQueue"]


class ReaderQueue:
    """Every reader of ``door`` (``door.list_readers()``) with a card worker each.

    Args:
        door: the app's or the CLI's door; the queue opens one :meth:`~CardDoor.reader_door` per reader.
        on_change: called with each entry that changed (from a worker or the polling thread).
    """

    def __init__(self, door: CardDoor, on_change: Callable[[QueueEntry], None] | None = None) -> None:
        self._door = door
        self._on_change = on_change
        self._lock = threading.Lock()
        self._doors: dict[str, CardDoor] = {}
        self._present: dict[str, bool] = {}
        self._entries: dict[str, QueueEntry] = {}
        self._generation: dict[str, int] = {}
        self._cards: dict[str, QueueEntry] = {}
        """Each card seen (by card id): its latest entry, for the summary (a renewed card stays renewed)."""

    # -- looking at the readers ---------------------------------------------------------------
    def poll(self) -> list[QueueEntry]:
        """List the readers (blocking: call it off the UI thread) and follow their cards: a new
        card is read on its reader's worker; a card gone, or a reader gone, shows so.

        Returns: the entries, by reader name.
        """
        try:
            readers = self._door.list_readers()
        except CardError:  # pcscd stopped: every reader is gone for now
            readers = []
        listed = dict(readers)
        for name, present in readers:
            if name not in self._doors:
                self._doors[name] = self._door.reader_door(name)
                self._generation.setdefault(name, 0)
            was = self._present.get(name)
            self._present[name] = present
            if present and was is not True:
                self.read(name)
            elif not present and was is not False:
                self._card_left(name)
        for name in [n for n in self._doors if n not in listed]:
            self._reader_gone(name)
        return self.entries()

    def entries(self) -> list[QueueEntry]:
        with self._lock:
            return [self._entries[name] for name in sorted(self._entries)]

    def entry(self, reader: str) -> QueueEntry | None:
        with self._lock:
            return self._entries.get(reader)

    def read(self, reader: str) -> None:
        """Read the card in ``reader`` again (its entry shows *reading the card*, then the result)."""
        door = self._doors.get(reader)
        if door is None:
            return
        generation = self._bump(reader, QueueEntry(reader, EntryState.READING))
        try:
            future = door.read_card()
        except RuntimeError:  # the reader's worker was closed meanwhile
            return
        future.add_done_callback(lambda f: self._guard(self._read_done, reader, generation, f))

    def _read_done(self, reader: str, generation: int, future: Future[CardSummary]) -> None:
        try:
            summary = future.result()
        except (CardRemovedError, NoCardError):
            self._gone_card(reader)
            self._update(reader, generation, QueueEntry(reader, EntryState.NO_CARD))
            return
        except PinBlockedError:
            self._update(reader, generation, words_entry(reader, EntryState.REFUSED, blocked_words(self._ra())))
            return
        except CardError as exc:
            self._update(reader, generation, error_entry(QueueEntry(reader, EntryState.FAILED), exc))
            return
        self._update(reader, generation, self._classify(reader, summary))

    def _classify(self, reader: str, summary: CardSummary) -> QueueEntry:
        from card.renewal import UpdateCheck, update_check

        settings = self._door.settings
        base = QueueEntry(reader, EntryState.DUE, summary.holder, summary.card_id, pin_retries=summary.pin_retries)
        if summary.pin_retries == 0:
            return words_entry(reader, EntryState.REFUSED, blocked_words(settings.ra_contact), base)
        check = update_check(summary)
        if check is UpdateCheck.RESUME and summary.pending_journal is not None:
            return dataclasses.replace(base, due="resume " + summary.pending_journal.reference)
        if check is UpdateCheck.AVAILABLE:
            return dataclasses.replace(base, due=slot_names(summary.due))
        words = update_words(summary, check, settings.window_days, settings.ra_contact)
        state = EntryState.NOT_DUE if check is UpdateCheck.UP_TO_DATE else EntryState.REFUSED
        return dataclasses.replace(base, state=state, message=words.message if words else "",
                                   next_step=words.next_step if words else "")

    def _card_left(self, reader: str) -> None:
        entry = self.entry(reader)
        if entry is not None and entry.state is EntryState.RENEWING:
            return  # the engine reports the pull and keeps the journal
        if entry is not None and entry.state in (EntryState.DONE, EntryState.FAILED):
            self._bump(reader, entry)  # what happened to the card stays shown (its reference)
            return
        self._bump(reader, QueueEntry(reader, EntryState.NO_CARD))

    def _gone_card(self, reader: str) -> None:
        """The card in ``reader`` was found removed: whatever card the next poll sees there is read
        afresh (a card swapped between two polls never shows as absent in the reader list)."""
        self._present[reader] = False

    def _reader_gone(self, reader: str) -> None:
        door = self._doors.pop(reader)
        self._present.pop(reader, None)
        door.close(wait=False)
        self._door.forget_reader_door(door)
        entry = self.entry(reader)
        if entry is not None and entry.state is EntryState.RENEWING:
            return  # the renewal's own error says what happened to it
        self._bump(reader, QueueEntry(reader, EntryState.GONE, message="The reader was disconnected."))

    # -- renewing ------------------------------------------------------------------------------
    def ask_pin(self, reader: str) -> QueueEntry | None:
        """Mark the card in ``reader`` as waiting for its holder's PIN; its entry (with the card id
        to pass to :meth:`renew`), or None when it is not due (nothing to ask)."""
        with self._lock:
            entry = self._entries.get(reader)
            if entry is None or entry.state is not EntryState.DUE:
                return None
            entry = self._entries[reader] = dataclasses.replace(entry, state=EntryState.WAITING_PIN)
        self._changed(entry)
        return entry

    def pin_not_given(self, reader: str, card_id: str | None) -> None:
        """The holder cancelled the PIN question: the card stays due."""
        self._back_to_due(reader, card_id, "", "")

    def renew(self, reader: str, card_id: str | None, pin: Secret, *, allow_last_try: bool = False) -> Future[QueueEntry]:
        """Renew the card ``card_id`` in ``reader`` with ``pin`` (typed for it), on that reader's worker.

        The PIN goes to that card only: if the reader now holds another card (or none), it is
        wiped unsent (``CardChangedError``, checked again in the card transaction). With one try
        left it is not sent unless ``allow_last_try`` (the holder confirmed).

        Returns: a future of the card's entry once its renewal ended (never raises).
        Raises:
            CardChangedError: the card is not the one asked for, or is not waiting for a renewal
                (the PIN was wiped, nothing was sent).
        """
        with self._lock:
            entry, door = self._entries.get(reader), self._doors.get(reader)
            if (entry is None or door is None or entry.card_id != card_id
                    or entry.state not in (EntryState.DUE, EntryState.WAITING_PIN)):
                pin.wipe()
                raise CardChangedError(f"the card in {reader} is not the one the PIN was typed for, or it is "
                                       "no longer waiting for a renewal")
            generation = self._generation[reader]
            entry = self._entries[reader] = dataclasses.replace(entry, state=EntryState.RENEWING, step="starting",
                                                                message="", next_step="", reference=None)
        self._changed(entry)
        request = RenewalRequest(pin, progress=_Progress(self, reader, generation), expect_card=card_id,
                                 refuse_last_try=not allow_last_try)
        done: Future[QueueEntry] = Future()
        try:
            future = door.renew_if_due(request)
        except RuntimeError as exc:  # its worker was closed: the reader went away
            pin.wipe()
            future = Future()
            future.set_exception(CardRemovedError(f"the reader {reader} went away ({exc})"))

        def finished(f: Future[tuple[CardSummary, RenewalResult | None]]) -> None:
            pin.wipe()  # (the door wipes it too; not when the card turned out not due)
            self._guard(self._renew_done, reader, generation, entry, f)
            done.set_result(self.entry(reader) or entry)

        future.add_done_callback(finished)
        return done

    def _renew_done(self, reader: str, generation: int, entry: QueueEntry,
                    future: Future[tuple[CardSummary, RenewalResult | None]]) -> None:
        try:
            summary, result = future.result()
        except InvalidPinError as exc:
            left = exc.attempts_remaining
            self._back_to_due(reader, entry.card_id, f"Wrong PIN: {tries_left(left)}." if left is not None
                              else "Wrong PIN.", "The holder types the PIN again.", left)
            return
        except LastPinTryError:
            self._back_to_due(reader, entry.card_id, f"PIN not sent: {tries_left(1)}.",
                              "Select the card again; the holder confirms before the PIN is sent.", 1)
            return
        except PinBlockedError:
            self._update(reader, generation, words_entry(reader, EntryState.REFUSED, blocked_words(self._ra()), entry))
            return
        except CardChangedError as exc:
            self._update(reader, generation, error_entry(dataclasses.replace(entry, state=EntryState.FAILED), exc))
            self._remember(dataclasses.replace(entry, state=EntryState.FAILED))
            self.read(reader)
            return
        except CardError as exc:
            if isinstance(exc, (CardRemovedError, NoCardError)):
                self._gone_card(reader)
            self._update(reader, generation, error_entry(dataclasses.replace(entry, state=EntryState.FAILED), exc))
            return
        if result is not None and isinstance(result.error, CardRemovedError):
            self._gone_card(reader)
        if result is None:  # renewed meanwhile (by another program): up to date now
            self._update(reader, generation, self._classify(reader, summary))
            return
        self._update(reader, generation, result_entry(entry, result, self._ra()))

    def _back_to_due(self, reader: str, card_id: str | None, message: str, next_step: str,
                     retries: int | None = None) -> None:
        with self._lock:
            entry = self._entries.get(reader)
            if entry is None or entry.card_id != card_id or entry.state not in (EntryState.WAITING_PIN,
                                                                                 EntryState.RENEWING):
                return
            entry = self._entries[reader] = dataclasses.replace(
                entry, state=EntryState.DUE, step="", message=message, next_step=next_step,
                pin_retries=retries if retries is not None else entry.pin_retries)
        self._changed(entry)

    def step(self, reader: str, generation: int, text: str) -> None:
        """A renewal step reached (from its worker thread)."""
        with self._lock:
            entry = self._entries.get(reader)
            if entry is None or self._generation.get(reader) != generation or entry.state is not EntryState.RENEWING:
                return
            entry = self._entries[reader] = dataclasses.replace(entry, step=text)
        self._changed(entry)

    # -- the end ---------------------------------------------------------------------------------
    @property
    def renewing(self) -> bool:
        """Some card is being renewed (or its PIN is being asked)."""
        return any(e.state in (EntryState.RENEWING, EntryState.WAITING_PIN) for e in self.entries())

    def cards(self) -> list[QueueEntry]:
        """Every card seen, by card id, as it ended (a renewed card counts as renewed)."""
        with self._lock:
            return list(self._cards.values())

    def summary(self) -> dict[str, int]:
        """``{"renewed": n, "failed": n, "not_due": n}`` over every card seen."""
        counts = {"renewed": 0, "failed": 0, "not_due": 0}
        for card in self.cards():
            if card.state.outcome is not None:
                counts[card.state.outcome] += 1
        return counts

    def cancel(self) -> None:
        """Stop every renewal before its next certificate and every wait (the doors' shared token)."""
        self._door.cancel()

    def close(self, *, wait: bool = True, timeout_s: float | None = 30.0) -> bool:
        """Close every reader's worker (after its current card step); True when all have ended."""
        ended = True
        for name in list(self._doors):
            door = self._doors.pop(name)
            if door.close(wait=wait, timeout_s=timeout_s, cancel_pending=True):
                self._door.forget_reader_door(door)
            else:  # still finishing a card step: the door it came from waits for it when it closes
                ended = False
        return ended

    # -- bookkeeping ---------------------------------------------------------------------------
    def _ra(self) -> str:
        return self._door.settings.ra_contact

    def _bump(self, reader: str, entry: QueueEntry) -> int:
        with self._lock:
            self._generation[reader] = generation = self._generation.get(reader, 0) + 1
            self._entries[reader] = entry
        self._changed(entry)
        return generation

    def _update(self, reader: str, generation: int, entry: QueueEntry) -> None:
        with self._lock:
            if self._generation.get(reader) != generation:
                return  # the card left (or the reader went) since: a newer entry stands
            self._entries[reader] = entry
        self._remember(entry)
        self._changed(entry)

    def _remember(self, entry: QueueEntry) -> None:
        if entry.card_id is None or entry.state.outcome is None:
            return
        with self._lock:
            before = self._cards.get(entry.card_id)
            if before is not None and before.state is EntryState.DONE and entry.state is EntryState.NOT_DUE:
                return  # read again after its renewal: it stays renewed
            self._cards[entry.card_id] = entry

    def _changed(self, entry: QueueEntry) -> None:
        if entry.card_id is not None and entry.state in (EntryState.DUE, EntryState.WAITING_PIN, EntryState.RENEWING):
            self._remember(entry)
        if self._on_change is not None:
            self._on_change(entry)

    @staticmethod
    def _guard(fn: Callable[..., None], *args: object) -> None:
        """Run a future's callback; an error in it is logged, never lost in the worker."""
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - a done-callback's error would vanish silently
            logger.exception("renewal queue bookkeeping failed")


class _Progress:
    """The engine's progress (``card.renewal.RenewalReporter``) as the entry's step."""

    def __init__(self, queue: ReaderQueue, reader: str, generation: int) -> None:
        self._queue, self._reader, self._generation = queue, reader, generation

    def step(self, slot: ProgressKey | None, step: RenewalStep, detail: str = "") -> None:
        from card.renewal import key_name

        self._queue.step(self._reader, self._generation, (f"{key_name(slot)} " if slot is not None else "") + step.value)

    def slot_finished(self, slot: ProgressKey, result: object) -> None:
        pass


