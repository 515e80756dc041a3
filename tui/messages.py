"""Messages between the card worker and the panes (DESIGN §2).

Events are named in the past tense, as Textual's own are (``Button.Pressed``). The renewal
messages are posted from the card thread by :mod:`tui.bridge`; ``post_message`` is thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # annotations only: the renewal engine is not imported before the first frame
    from concurrent.futures import Future

    from card.piv import Slot
    from card.renewal import CardSummary, RenewalResult, RenewalStep, SlotResult


@dataclass
class CardInserted(Message):
    """The card watcher saw a card arrive in the reader."""


@dataclass
class CardRemoved(Message):
    """The card watcher saw the card leave the reader."""


@dataclass
class CardRead(Message):
    """The card was read (holder, slots, PIN tries left)."""

    summary: CardSummary


@dataclass
class RenewalProgressed(Message, bubble=False):
    """The renewal engine reached ``step`` (for ``slot``, or the whole card when None)."""

    slot: Slot | None
    step: RenewalStep
    detail: str = ""


@dataclass
class CertificateWritten(Message, bubble=False):
    """One certificate was renewed, written, read back and test-signed."""

    slot: Slot
    result: SlotResult


@dataclass
class SlotRenewalFailed(Message, bubble=False):
    """One certificate could not be renewed (``result.error`` says why)."""

    slot: Slot
    result: SlotResult


@dataclass
class RenewalFinished(Message, bubble=False):
    """The renewal engine returned (successfully or with per-slot errors)."""

    result: RenewalResult


@dataclass
class NextRequested(Message, bubble=False):
    """The renewal engine waits for *Next* after certificate ``number`` of ``total`` (posted to
    the app from the card thread). The UI sets ``answer`` (True: go on); the card thread waits on
    it and on the app's shutdown event, never on the UI itself."""

    result: SlotResult
    number: int
    total: int
    answer: Future[bool]
