"""One reader's card in the renewal queue (:mod:`card.reader_queue`): its state, what the *Readers*
pane's row and ``cardrenew queue``'s line show, and how a renewal's outcome becomes an entry."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from card.errors import CardError, CardRemovedError
from card.words import Words, sentence

if TYPE_CHECKING:
    from card.renewal import RenewalResult


class EntryState(enum.Enum):
    """Where one reader's card stands (the *State* column; the value is what it shows)."""

    NO_CARD = "no card"
    READING = "reading the card"
    NOT_DUE = "up to date"
    DUE = "due"
    WAITING_PIN = "waiting for PIN"
    RENEWING = "renewing"
    DONE = "renewed"
    FAILED = "failed"
    REFUSED = "not renewable here"
    GONE = "reader disconnected"

    @property
    def outcome(self) -> str | None:
        """The summary's word for a card in this state: ``renewed``, ``not_due``, ``failed``
        (also a card left due or refused: it was not renewed), None: no card."""
        if self is EntryState.DONE:
            return "renewed"
        if self is EntryState.NOT_DUE:
            return "not_due"
        if self in (EntryState.NO_CARD, EntryState.READING, EntryState.GONE):
            return None
        return "failed"


@dataclass(frozen=True)
class QueueEntry:
    """One reader and its card as last seen. ``card_id`` is the GUID (hex) the PIN is bound to."""

    reader: str
    state: EntryState
    holder: str | None = None
    card_id: str | None = None
    due: str = ""
    """The certificates due (``"Authentication (9A), Signature (9C)"``), or the update to resume."""
    step: str = ""
    """While renewing: the step under way (``"9C Writing"``)."""
    message: str = ""
    next_step: str = ""
    reference: str | None = None
    pin_retries: int | None = None

    @property
    def status(self) -> str:
        """The *State* column: ``renewing: 9C Writing``, ``failed (ref R-…)``, ``due``…"""
        if self.state is EntryState.RENEWING and self.step:
            return f"renewing: {self.step}"
        if self.state is EntryState.FAILED and self.reference:
            return f"failed (ref {self.reference})"
        return self.state.value

    def line(self) -> str:
        """One line for ``cardrenew queue``: reader, holder, state, what happened, reference, next step."""
        parts = [self.reader, self.holder or "-", self.status.upper() if self.state is EntryState.FAILED else self.status]
        text = " | ".join(parts)
        if self.message:
            text += f" — {self.message}"
        if self.reference and self.state is not EntryState.FAILED:
            text += f" Reference: {self.reference}."
        if self.next_step:
            text += f" Next step: {self.next_step}"
        return text



def words_entry(reader: str, state: EntryState, words: Words, like: QueueEntry | None = None) -> QueueEntry:
    """An entry in ``state`` saying ``words`` (``like``: the card it is about)."""
    base = like or QueueEntry(reader, state)
    return dataclasses.replace(base, state=state, step="", message=words.message, next_step=words.next_step)


def error_entry(entry: QueueEntry, exc: CardError) -> QueueEntry:
    """``entry`` saying what ``exc`` says (title, message, next step, reference)."""
    return dataclasses.replace(entry, step="", message=sentence(f"{exc.title}: {exc}"), next_step=exc.next_step,
                               reference=exc.reference or entry.reference)


def result_entry(entry: QueueEntry, result: RenewalResult, ra_contact: str) -> QueueEntry:
    """The entry of a renewal that ran: renewed, or failed with the reference and the next step."""
    if result.ok or result.ours_renewed:
        expiry = [r.new_certificate.not_valid_after_utc.date().isoformat() for r in result.slots
                  if r.new_certificate is not None]
        return dataclasses.replace(entry, state=EntryState.DONE, step="", reference=result.reference,
                                   message="Renewed" + (f", new expiry {min(expiry)}." if expiry else "."))
    error = result.error or next((r.error for r in result.slots if r.error is not None), None)
    if isinstance(result.error, CardRemovedError):
        next_step = "Insert the card again and renew it: the update resumes where it stopped."
        message = "The card was removed while it was being updated."
    else:
        message = sentence(f"{error.title}: {error}") if error is not None else "Not every certificate was renewed."
        next_step = ("Renew this card again: the update resumes where it stopped. If the error persists, contact "
                     f"{ra_contact} with the reference." if result.journal_kept else
                     (error.next_step if error is not None and error.next_step else f"Contact {ra_contact}."))
    return dataclasses.replace(entry, state=EntryState.FAILED, step="", message=message, next_step=next_step,
                               reference=result.reference)
