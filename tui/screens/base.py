"""The base of every pane: typed access to the app (:class:`PaneHost`, so no pane imports the
app), the worker-error funnel, what a pane does when the card comes and goes, and the PIN changes
(*Change passcode*, *Unlock card*) that both the Logon and the Card pane offer.

A pane never navigates by calling the app: it posts a message (:mod:`tui.messages`: ``GotoPane``,
``LoggedOn``, ``LogOffRequested``, ``RenewalRequested``, ``ErrorRaised`` …) that the app handles.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, cast

from textual import work
from textual.app import SystemCommand
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from card.errors import CardError, InvalidPinError, PinBlockedError
from card.words import CARD_UNLOCKED, PIN_CHANGED, Words, blocked_by_change, not_accepted
from tui.messages import ErrorRaised, GotoPane, LogOffRequested

if TYPE_CHECKING:
    from card.secret import Secret
    from card.service import CardDoor, CardSummary, RenewalResult
    from tui.screens.dialogs import TextDialog

PinChange = Literal["change", "unlock"]
T = TypeVar("T")


class PaneHost(Protocol):
    """What a pane may ask of the app (``tui.app.CardRenewApp`` is one): state and queries; the
    app's own steps (navigation, errors, the renewal) are asked for with messages instead."""

    backend: CardDoor
    summary: CardSummary | None
    is_logged_on: bool
    readers: list[tuple[str, bool]] | None
    last_result: RenewalResult | None
    now: Callable[[], dt.datetime]
    shutdown_event: threading.Event

    @property
    def renewing(self) -> bool: ...

    async def read_summary(self) -> CardSummary: ...

    async def tries_left(self, what: Literal["PIN", "PUK"] = "PIN") -> int | None: ...

    def note_tries(self, what: Literal["PIN", "PUK"], left: int | None) -> None: ...

    def explain_error(self, error: BaseException) -> tuple[str, str, str]: ...

    def open_dialog(self, dialog: TextDialog[T], callback: Callable[[T | None], object] | None = None) -> Any: ...


class Pane(Screen[None]):
    """A full-screen pane. Worker errors are not handled here but sent to the app's one funnel.

    Below 80×24 the pane has the class ``-narrow`` and/or ``-short``; app.tcss tightens the layout
    with them so that every pane works at 60×20.
    """

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (80, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (24, "-tall")]

    WHEN_CARD_REMOVED: ClassVar[Literal["policy", "end-session", "nothing"]] = "policy"
    """What a card removal means here (the app acts on it; never while a renewal runs): ``policy``
    — ``ui.removal_policy`` when logged on; ``end-session`` — the session ends quietly (the card
    forgets the PIN) and the pane stays; ``nothing`` — only :meth:`card_removed` is called."""
    LISTS_READERS: ClassVar[bool] = False
    """The app keeps the reader list fresh (every second) while this pane shows."""

    @property
    def card_app(self) -> PaneHost:
        """The app, typed."""
        return cast("PaneHost", self.app)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Send a failed worker's error to the app's one funnel."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.show_error(event.worker.error)

    def show_error(self, error: BaseException | Words, then: Message | None = None, *, id: str = "error-dialog",
                   button: str = "OK") -> None:
        """Ask the app to show ``error`` (an exception, or a refused state's words) through its one
        funnel, in a dialog of kind ``id``; post ``then`` to the app once it is closed."""
        self.app.post_message(ErrorRaised(error, then, id=id, button=button))

    # -- what the app tells the pane (no card I/O here unless the pane says so) ---------------
    def card_removed(self) -> None:
        """The card left the reader (not during a renewal)."""

    def card_inserted(self) -> None:
        """A card arrived in the reader (not during a renewal); e.g. the logon pane reads it, or a
        pane shown after the session ended brings the logon pane back (:meth:`logon_if_logged_off`)."""

    def logon_if_logged_off(self) -> None:
        """Back to the logon pane unless logged on."""
        if not self.card_app.is_logged_on:
            self.app.post_message(GotoPane("logon"))

    def readers_listed(self, readers: list[tuple[str, bool]]) -> None:
        """The reader list changed (``[(name, has_card)]``)."""

    def reader_switched(self) -> None:
        """The app now uses another reader."""

    def went_idle(self) -> None:
        """Nobody used the app for ``ui.inactivity_timeout_s`` while not logged on."""

    def pin_tries_changed(self) -> None:
        """The card answered a PIN entry (the summary's PIN tries changed)."""

    def system_commands(self) -> Iterable[SystemCommand]:
        """The command palette's card commands valid on this pane."""
        yield from ()

    # -- the last-try guard ------------------------------------------------------------------
    async def confirm_last_try(self, what: str, tries_left: int | None) -> bool:
        """With 1 ``what`` (PIN or PUK) try left, ask before it is sent (Cancel focused).

        Call it from a worker, after the entry and before anything goes to the card.

        Returns:
            True to send; False when the holder cancelled, or the same question is open already
            (a second submit: the open one decides).
        """
        if tries_left != 1:
            return True
        from tui.screens.dialogs import last_try_dialog

        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def answered(ok: bool | None) -> None:
            if not answer.done():
                answer.set_result(bool(ok))

        dialog = last_try_dialog(what)
        if self.card_app.open_dialog(dialog, answered) is None:
            return False
        try:
            return await answer
        except asyncio.CancelledError:  # the worker was replaced or the app closes: nothing is sent
            if dialog in self.app.screen_stack and not dialog.answered:
                dialog.dismiss(False)
            raise

    # -- Change passcode / Unlock card ------------------------------------------------------
    def offer_pin_change(self, kind: PinChange) -> None:
        """Ask for the current PIN (``change``) or the PUK (``unlock``) and a new PIN, then send it."""
        from tui.screens.dialogs import change_pin_dialog, unlock_dialog

        if self.pin_change_running:
            return  # one PIN change at a time: the one under way reports its outcome

        def entered(values: tuple[Secret, Secret] | None) -> None:
            if values is None:
                self.notify("Nothing was changed on your card.", title="Cancelled")
            elif not self.pin_change_running:
                self._pin_change_worker = self.apply_pin_change(kind, *values)

        self.app.push_screen(change_pin_dialog() if kind == "change" else unlock_dialog(), entered)

    _pin_change_worker: Worker[None] | None = None

    @property
    def pin_change_running(self) -> bool:
        """A PIN change or unlock is under way (its entry is not sent a second time)."""
        return self._pin_change_worker is not None and not self._pin_change_worker.is_finished

    @work(exclusive=True, group="card", exit_on_error=False, description="Changing the PIN")
    async def apply_pin_change(self, kind: PinChange, secret: Secret, new_pin: Secret) -> None:
        """Change the PIN or unblock it with the PUK through the card service (which audits the
        outcome and wipes both secrets once the card answered), and report the outcome."""
        from tui.screens.dialogs import MessageDialog

        app = self.card_app
        what: Literal["PIN", "PUK"] = "PIN" if kind == "change" else "PUK"
        guid = app.summary.card_id if app.summary else None
        try:
            if not await self.confirm_last_try(what, await app.tries_left(what)):
                self.notify(f"The {what} was not sent. Nothing was changed on your card.", title="Cancelled")
                return
            door = app.backend.change_pin if kind == "change" else app.backend.unblock_pin
            await asyncio.wrap_future(door(secret, new_pin, card_guid=guid))
        except (InvalidPinError, PinBlockedError) as exc:
            self._pin_change_refused(kind, what, exc)
            return
        except CardError as exc:
            self.show_error(exc)
            return
        finally:
            secret.wipe()  # (the service wipes them too; a refusal before it sent them leaves them here)
            new_pin.wipe()
        app.note_tries(what, None)
        if kind == "change":
            self.app.push_screen(MessageDialog(PIN_CHANGED.title, PIN_CHANGED.message, id="pin-changed-dialog"))
        else:  # the words of `cardrenew change-pin` / `unblock` (card.words)
            self.app.push_screen(MessageDialog(CARD_UNLOCKED.title, CARD_UNLOCKED.message, id="unlocked-dialog"))
        self.pin_changed()

    def _pin_change_refused(self, kind: PinChange, what: Literal["PIN", "PUK"],
                            error: InvalidPinError | PinBlockedError) -> None:
        """A wrong PIN or PUK (the tries left), or a blocked one (a blocked PIN ends the session)."""
        app = self.card_app
        if isinstance(error, InvalidPinError):
            left = error.attempts_remaining
            app.note_tries(what, left)
            outcome = "Your PIN was not changed." if kind == "change" else "The card is still blocked."
            self.show_error(Words(f"Wrong {what}", f"{not_accepted(what, left)} {outcome}",
                                  "Select the button again and enter it carefully."), id="pin-change-error-dialog")
            return
        app.note_tries(what, 0)
        ra = app.backend.settings.ra_contact
        blocked = ErrorRaised(blocked_by_change(what, ra), id="pin-change-error-dialog")
        if kind == "change" and app.is_logged_on:
            # a blocked PIN ends the session; the message shows over the logged-off pane
            self.app.post_message(LogOffRequested(then=blocked))
        else:
            self.app.post_message(blocked)

    def pin_changed(self) -> None:
        """Called after a successful change or unlock (panes re-read the card)."""
