"""Messages between the card worker, the panes and the app (DESIGN §2).

Events are named in the past tense, as Textual's own are (``Button.Pressed``). The renewal
messages are posted from the card thread by :mod:`tui.bridge`; ``post_message`` is thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from textual.message import Message

if TYPE_CHECKING:  # annotations only: the renewal engine is not imported before the first frame
    from concurrent.futures import Future

    from card.secret import Secret
    from card.service import CardSummary, ProgressKey, RenewalResult, RenewalStep, SlotResult
    from card.words import Words


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
    """The renewal engine reached ``step`` (for ``slot`` — a PIV slot or a token's key —, or the whole
    card when None)."""

    slot: ProgressKey | None
    step: RenewalStep
    detail: str = ""


@dataclass
class CertificateWritten(Message, bubble=False):
    """One certificate was renewed, written, read back and test-signed."""

    slot: ProgressKey
    result: SlotResult


@dataclass
class SlotRenewalFailed(Message, bubble=False):
    """One certificate could not be renewed (``result.error`` says why)."""

    slot: ProgressKey
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


# -- from the panes to the app (a pane never calls the app to navigate: it posts one of these) ----
@dataclass
class ErrorRaised(Message):
    """Show ``error`` (an exception, or the words of a refused state, ``card.words.Words``) through
    the app's one error funnel, in a dialog of kind ``id`` with ``button``; post ``then`` (to the
    app) once its dialog is closed."""

    error: BaseException | Words
    then: Message | None = None
    id: str = "error-dialog"
    button: str = "OK"


@dataclass
class GotoPane(Message):
    """Show another pane: ``"logon"``, ``"card"`` (the Card tab; the logon pane when no longer
    logged on) with what the last renewal did (``renewed``) or why it stopped (``stopped``), or
    ``"completed-with-errors"`` for ``result``."""

    pane: Literal["logon", "card", "completed-with-errors"]
    renewed: RenewalResult | None = None
    stopped: str | None = None
    result: RenewalResult | None = None


@dataclass
class LoggedOn(Message):
    """The PIN was accepted on the logon pane: the session starts (the Card tab)."""


@dataclass
class LogOffRequested(Message):
    """Log off (the card forgets the PIN); ``then`` (e.g. an :class:`ErrorRaised`) is posted to the
    app once the pane that follows shows."""

    then: Message | None = None


@dataclass
class RenewalRequested(Message):
    """The holder entered the PIN again: run the renewal from ``summary`` (the app starts it once;
    a second request is dropped and its ``pin`` wiped)."""

    pin: Secret
    summary: CardSummary


@dataclass
class RenewalEnded(Message):
    """The renewal engine returned ``result`` (None: it refused before anything changed); the
    card may be removed again without it being the engine's to report."""

    result: RenewalResult | None


@dataclass
class ReaderChosen(Message):
    """The holder chose the reader ``name`` on the logon pane (never switched on our own after)."""

    name: str
