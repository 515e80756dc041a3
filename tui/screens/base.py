"""The base of every pane: typed access to the app, the worker-error funnel, and the PIN changes
(*Change passcode*, *Unlock card*) that both the Logon and the Card pane offer."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal, cast

from textual import work
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from card.errors import CardError, CardRemovedError, InvalidPinError, NoCardError, PinBlockedError
from card.words import Words, not_accepted

if TYPE_CHECKING:
    from card.piv import PivSession
    from card.secret import Secret
    from tui.app import CardRenewApp

PinChange = Literal["change", "unlock"]


class Pane(Screen[None]):
    """A full-screen pane. Worker errors are not handled here but sent to the app's one funnel.

    Below 80×24 the pane has the class ``-narrow`` and/or ``-short``; app.tcss tightens the layout
    with them so that every pane works at 60×20.
    """

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (80, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (24, "-tall")]

    @property
    def card_app(self) -> CardRenewApp:
        """The app, typed."""
        return cast("CardRenewApp", self.app)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Send a failed worker's error to :meth:`CardRenewApp.show_error` (the one funnel)."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.card_app.show_error(event.worker.error)

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
        """Send CHANGE REFERENCE DATA or RESET RETRY COUNTER on the card thread and report the outcome.
        Both secrets are wiped once the card answered."""
        from tui.screens.dialogs import MessageDialog

        app = self.card_app

        def send(session: PivSession) -> None:
            session.select()
            if kind == "change":
                session.change_pin(secret, new_pin)
            else:
                session.reset_retry(secret, new_pin)

        what = "PIN" if kind == "change" else "PUK"
        try:
            if not await self.confirm_last_try(what, await app.tries_left(what)):
                self.notify(f"The {what} was not sent. Nothing was changed on your card.", title="Cancelled")
                return
            await app.card_call(send)
        except InvalidPinError as exc:
            left = exc.attempts_remaining
            app.note_tries(what, left)
            outcome = "Your PIN was not changed." if kind == "change" else "The card is still blocked."
            app.show_error(Words(f"Wrong {what}", f"{not_accepted(what, left)} {outcome}",
                                 "Select the button again and enter it carefully."), id="pin-change-error-dialog")
            self._audit(kind, "wrong_" + what.lower())
            return
        except PinBlockedError:
            app.note_tries(what, 0)
            self._audit(kind, "blocked")
            ra = app.backend.settings.ra_contact
            message = ("The PIN is now blocked." if kind == "change"
                       else "The PUK is blocked: this card can no longer be unlocked here.")
            words = Words("Card blocked", message, f"Contact {ra}.")
            if kind == "change" and app.is_logged_on:
                app.log_off()  # a blocked PIN ends the session; the message shows over the logged-off pane
                app.call_later(app.show_error, words, id="pin-change-error-dialog")
            else:
                app.show_error(words, id="pin-change-error-dialog")
            return
        except (CardRemovedError, NoCardError, CardError) as exc:
            app.show_error(exc)
            return
        finally:
            secret.wipe()
            new_pin.wipe()
        app.note_tries(what, None)
        self._audit(kind, "changed")
        if kind == "change":
            app.push_screen(MessageDialog("Your passcode (PIN) has been changed",
                                          "Use the new PIN from now on.", id="pin-changed-dialog"))
        else:
            app.push_screen(MessageDialog("Your card is unlocked",
                                          "The PIN has been reset. Log on with the new PIN.", id="unlocked-dialog"))
        self.pin_changed()

    def pin_changed(self) -> None:
        """Called after a successful change or unlock (panes re-read the card)."""

    def _audit(self, kind: PinChange, outcome: str) -> None:
        summary = self.card_app.summary
        # best effort here (the card operation already happened): a record the log cannot take is
        # kept beside it and written by the next write
        if self.card_app.backend.audit.write_quietly(event="change_pin" if kind == "change" else "unlock_card",
                                                     card_guid=summary.card_id if summary else None,
                                                     outcome=outcome) is not None:
            self.log.warning("could not write the audit log")
