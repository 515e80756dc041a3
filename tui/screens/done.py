"""End panes: "completed with errors" and "logged off"."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Label, Static

from card.errors import CardRemovedError, TokenStorageError
from tui.messages import GotoPane, LogOffRequested
from tui.screens.base import Pane
from tui.widgets import PaneFooter, app_header
from tui.screens.dialogs import format_date

if TYPE_CHECKING:
    from card.service import RenewalResult


class CompletedWithErrorsScreen(Pane):
    """What was and was not renewed, the reference code and the next step."""

    BINDINGS = [
        Binding("c", "back_to_card", "Card tab", id="card-tab", tooltip="Back to the Card tab to try again"),
        Binding("l", "log_off", "Log off", id="log-off", tooltip="Log off; then remove the card"),
        Binding("ctrl+q", "app.quit", "Quit", id="quit", tooltip="Leave cardrenew"),
    ]
    WHEN_CARD_REMOVED = "end-session"  # the holder reads on; the card forgets the PIN

    def __init__(self, result: RenewalResult, ra_contact: str) -> None:
        super().__init__()
        self.result = result
        self.ra_contact = ra_contact

    @property
    def removed_during_update(self) -> bool:
        error = self.result.error  # a token that could not store the change never left its reader (F-19)
        return isinstance(error, CardRemovedError) and not isinstance(error, TokenStorageError)

    def compose(self) -> ComposeResult:
        result = self.result
        yield app_header()
        with Vertical(id="errors-panel", classes="panel"):
            yield Label("The operation was completed with errors", id="errors-title", classes="pane-title -error", markup=False)
            for slot in result.slots:
                if slot.renewed and slot.new_certificate is not None:
                    text = f"Renewed      {slot.label} ({slot.slot.hex}): valid until {format_date(slot.new_certificate.not_valid_after_utc)}"
                    css = "-ok"
                else:
                    reason = str(slot.error) if slot.error else "not attempted"
                    text = f"Not renewed  {slot.label} ({slot.slot.hex}): {reason}"
                    css = "-failed"
                yield Static(text, classes=f"outcome {css}", id=f"outcome-{slot.slot.hex.lower()}", markup=False)
            yield Static(f"Reference: {result.reference}", id="reference", markup=False)
            yield Static(self.next_step(), id="next-step", markup=False)
            with Horizontal(id="errors-buttons"):
                yield Button("Back to Card tab", id="card-button", variant="primary")
                yield Button("Log off", id="logoff-button")
        yield PaneFooter()

    def next_step(self) -> str:
        ref = self.result.reference
        if isinstance(self.result.error, TokenStorageError):  # the cause's own next step (tester F-19)
            return (f"Next step: {self.card_app.explain_error(self.result.error)[2]} If it does not, contact "
                    f"{self.ra_contact} and quote reference {ref}.")
        if self.removed_during_update:
            return ("Next step: the card was removed during the update. Re-insert your card, log on again and "
                    "select Update My Card: the update resumes where it stopped. If it does not, contact "
                    f"{self.ra_contact} "
                    f"and quote reference {ref}.")
        return ("Next step: repeat the process from the Card tab (Update My Card). If the error persists, "
                f"contact {self.ra_contact} and quote reference {ref}.")

    def on_mount(self) -> None:
        self.query_one("#card-button", Button).focus()

    def card_inserted(self) -> None:
        """A real card was re-inserted by the holder, who has read this: the logon pane. The demo
        card comes back by itself (``--demo-fault pull-card``): the outcome stays until the holder
        leaves it (Back to Card tab, then the logon pane)."""
        if not self.card_app.backend.demo:
            self.logon_if_logged_off()

    @on(Button.Pressed, "#card-button")
    def _card_pressed(self) -> None:
        self.action_back_to_card()

    @on(Button.Pressed, "#logoff-button")
    def _logoff_pressed(self) -> None:
        self.action_log_off()

    def action_back_to_card(self) -> None:
        if self.card_app.is_logged_on:
            self.app.post_message(GotoPane("card", stopped=f"The last update was completed with errors (reference "
                                                         f"{self.result.reference}). {self.next_step()}"))
        else:
            self.app.post_message(GotoPane("logon"))

    def action_log_off(self) -> None:
        self.app.post_message(LogOffRequested())


class LoggedOffScreen(Pane):
    """ "You are logged off": remove the card, insert it and log on again to test it."""

    BINDINGS = [
        Binding("enter", "log_on", "Log on", id="log-on", key_display="Enter", tooltip="Back to the logon pane"),
        Binding("ctrl+q", "app.quit", "Quit", id="quit", tooltip="Leave cardrenew"),
    ]
    WHEN_CARD_REMOVED = "nothing"

    def __init__(self, removed: bool = False, idle: bool = False) -> None:
        super().__init__()
        self.removed = removed
        self.idle = idle

    def compose(self) -> ComposeResult:
        yield app_header()
        with Vertical(id="logged-off-panel", classes="panel"):
            yield Label("You are logged off", classes="pane-title", markup=False)
            if self.removed:
                yield Static("The card was removed, so you were logged off.", id="removed-note", classes="-warning", markup=False)
            elif self.idle:
                yield Static("You were logged off after a period without activity.", id="idle-note",
                             classes="-warning", markup=False)
            yield Static("You are logged off. Remove your card, then insert it and log on again to test it.",
                         id="logged-off-text", markup=False)
            yield Static("If you have any problem logging back on, contact your Registration Authority.",
                         id="logged-off-help", markup=False)
            yield Static("Waiting for the card to be inserted… (Enter: log on now)", id="waiting", markup=False)
        yield PaneFooter()

    def card_removed(self) -> None:
        self.query_one("#waiting", Static).update("Card removed. Insert it again to log on. (Enter: log on now)")

    def card_inserted(self) -> None:
        self.logon_if_logged_off()

    def action_log_on(self) -> None:
        self.app.post_message(GotoPane("logon"))
