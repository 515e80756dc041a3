"""The Logon pane: reader, card detected, the holder's name, masked PIN, *Logon*."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select, Static

from card.errors import CardError, CardRemovedError, InvalidPinError, NoCardError, PinBlockedError, PinFormatError
from card.secret import Secret
from card.words import FEW_TRIES, renewal_mode_words, sentence, token_name, tries_left
from tui.messages import LoggedOn, ReaderChosen
from tui.pin_input import PinInput
from tui.screens.base import Pane
from tui.screens.dialogs import last_try_dialog
from tui.widgets import PaneFooter, app_header

if TYPE_CHECKING:
    from textual.worker import Worker


class LogonScreen(Pane):
    """Confirms the holder's name from the card and logs on with the PIN."""

    BINDINGS = [
        Binding("ctrl+r", "reread_card", "Re-read card", id="reread", tooltip="Look for the card again"),
        Binding("f2", "choose_reader", "Reader", id="reader", tooltip="Choose the card reader (several are connected)"),
        Binding("f4", "unlock_card", "Unlock card", id="unlock", tooltip="Set a new PIN with the PUK (support staff)"),
        Binding("ctrl+q", "app.quit", "Quit", id="quit", tooltip="Leave cardrenew"),
    ]

    WHEN_CARD_REMOVED = "nothing"  # the pane reads the card again instead
    LISTS_READERS = True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "unlock_card":
            return self.unlock_offered
        if action == "choose_reader":
            return self.reader_choice_offered
        return True

    @property
    def reader_choice_offered(self) -> bool:
        """The reader list is offered on PC/SC when more than one reader is connected."""
        readers = self.card_app.readers
        return self.card_app.backend.can_switch_reader and readers is not None and len(readers) > 1

    @property
    def unlock_offered(self) -> bool:
        """*Unlock card* is offered when the configuration allows it and the PIN is blocked."""
        summary = self.card_app.summary
        return self.card_app.backend.settings.allow_unlock and summary is not None and summary.pin_retries == 0

    def __init__(self, notice: str | None = None) -> None:
        super().__init__()
        self.notice = notice
        """Shown under the PIN when the pane opens (kiosk: why the holder is back here)."""
        self._logon_worker: Worker[None] | None = None
        self._confirming = False

    @property
    def submitting(self) -> bool:
        """A PIN is on its way to the card, or its last-try question is open: another Enter or
        click on *Logon* is ignored (it would send the PIN twice, or open the question twice)."""
        worker = self._logon_worker
        return self._confirming or (worker is not None and not worker.is_finished)

    def compose(self) -> ComposeResult:
        settings = self.card_app.backend.settings
        backend = self.card_app.backend
        yield app_header()
        with Vertical(id="logon-panel", classes="panel"):
            yield Label("Smartcard logon", classes="pane-title", markup=False)
            yield Label(self._reader_text(), id="reader-name", markup=False)
            if backend.can_switch_reader:
                yield Select([], prompt="Choose a reader", id="reader-select", compact=True, classes="-hidden")
            yield Label("Looking for your card…", id="card-status", markup=False)
            yield Label("", id="logon-renewal-mode", markup=False)
            yield Label("The system will confirm your name:", id="confirm-name-label", markup=False)
            yield Label("–", id="holder-name", markup=False)
            yield Label("Enter your Passcode (PIN):", id="pin-label", markup=False)
            with Horizontal(id="pin-row"):
                yield PinInput(placeholder="PIN", id="pin-input")
                yield Button("Logon", id="logon-button", variant="primary")
            yield Static("", id="logon-message", markup=False)
            if settings.allow_unlock:
                yield Button("Unlock card", id="unlock-button", classes="-hidden")
            if backend.demo_pin:
                yield Static(f"Demo card: the PIN is {backend.demo_pin}", id="demo-hint", markup=False)
            elif backend.demo:
                yield Static("Demo card: the PIN was changed in this session; use the new one.", id="demo-hint",
                             markup=False)
            if settings.uses_default_management_key:
                yield Static("Warning: the well-known default card management key is in use. "
                             "Anyone can write to this card; use it for demonstrations and tests only.",
                             id="management-key-warning", classes="-warning", markup=False)
        yield PaneFooter()

    def _reader_text(self) -> str:
        return f"Reader: {self.card_app.backend.reader_name or 'none connected'}"

    # -- readers ------------------------------------------------------------------------------
    def readers_listed(self, readers: list[tuple[str, bool]]) -> None:
        """Show the readers (with whether each holds a card) when there are several."""
        for select in self.query("#reader-select").results(Select):
            current = self.card_app.backend.reader_name
            select.set_options([(f"{name} ({'card inserted' if present else 'no card'})", name)
                                for name, present in readers])
            if current in dict(readers):
                select.value = current
            select.set_class(len(readers) < 2, "-hidden")
        self.refresh_bindings()

    def reader_switched(self) -> None:
        """The app now uses another reader: show it and read its card."""
        self.query_one("#reader-name", Label).update(self._reader_text())
        self.query_one("#holder-name", Label).update("–")
        self.query_one("#logon-renewal-mode", Label).update("")
        status = self.query_one("#card-status", Label)
        status.update("Looking for your card…")
        status.set_class(False, "-warning")
        self.show_message("", "info")
        self.pin_input.clear()
        if self.card_app.readers is not None:
            self.readers_listed(self.card_app.readers)
        self.action_reread_card()

    @on(Select.Changed, "#reader-select")
    def _reader_selected(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self.card_app.backend.reader_name:
            self.app.post_message(ReaderChosen(event.value))

    def action_choose_reader(self) -> None:
        if self.reader_choice_offered:
            self.query_one("#reader-select", Select).focus()

    @property
    def pin_input(self) -> Input:
        return self.query_one("#pin-input", Input)

    @property
    def message(self) -> Static:
        return self.query_one("#logon-message", Static)

    def on_mount(self) -> None:
        if self.card_app.readers is not None:
            self.readers_listed(self.card_app.readers)
        if self.notice:
            self.show_message(self.notice, "warning")
        self.pin_input.focus()
        self.call_after_refresh(self.action_reread_card)  # after the first frame: the PIN is typed meanwhile

    def show_message(self, text: str, kind: str = "error") -> None:
        """Show ``text`` under the PIN (``kind``: error, warning or info)."""
        self.message.update(text)
        self.message.set_class(kind == "error", "-error")
        self.message.set_class(kind == "warning", "-warning")

    def action_reread_card(self) -> None:
        self.read_card()

    def card_removed(self) -> None:
        self.action_reread_card()

    def card_inserted(self) -> None:
        self.action_reread_card()

    def went_idle(self) -> None:
        if self.pin_input.value:
            self.pin_input.clear()  # a half-typed PIN is not left at an unattended kiosk

    def system_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Card: Re-read", "Look for the card again", self.action_reread_card)

    @work(exclusive=True, group="card", exit_on_error=False, description="Reading the card")
    async def read_card(self) -> None:
        status = self.query_one("#card-status", Label)
        try:
            summary = await self.card_app.read_summary()
        except (CardRemovedError, NoCardError):
            status.update("No card in the reader: insert your smartcard.")
            status.set_class(True, "-warning")
            return
        except PinBlockedError:
            status.update("Card detected.")
            self.show_blocked()
            return
        info = summary.info
        status.update("Card detected." if info.interface == "piv" else f"Card detected: {token_name(info)}.")
        status.set_class(False, "-warning")
        mode = renewal_mode_words(info.side_by_side)
        self.query_one("#logon-renewal-mode", Label).update(f"Renewal {mode.title.lower()}: {mode.message}")
        for warning in self.query("#management-key-warning"):  # a side-by-side token has no PIV management key
            warning.set_class(info.side_by_side, "-hidden")
        self.query_one("#holder-name", Label).update(summary.holder or "(no name on the card)")
        self._show_unlock()
        if summary.pin_retries == 0:
            self.show_blocked()
        elif summary.pin_retries == 1:
            self.show_message(sentence(tries_left(1)), "warning")

    def pin_tries_changed(self) -> None:
        """The card answered a PIN entry (app.note_tries): a blocked PIN is shown as such at once."""
        summary = self.card_app.summary
        if summary is not None and summary.pin_retries == 0 and self.is_mounted:
            self.show_blocked()

    def show_blocked(self) -> None:
        self.show_message(f"Your card is blocked. Contact {self.card_app.backend.settings.ra_contact} to unlock it.")
        self._show_unlock()

    def _show_unlock(self) -> None:
        for button in self.query("#unlock-button"):
            button.set_class(not self.unlock_offered, "-hidden")
        self.refresh_bindings()

    @on(Button.Pressed, "#unlock-button")
    def _unlock_pressed(self) -> None:
        self.action_unlock_card()

    def action_unlock_card(self) -> None:
        if self.unlock_offered:
            self.offer_pin_change("unlock")

    def pin_changed(self) -> None:
        self.show_message("Your card is unlocked. Log on with the new PIN.", "info")
        self.action_reread_card()

    @on(Input.Submitted, "#pin-input")
    @on(Button.Pressed, "#logon-button")
    def _logon_requested(self) -> None:
        self.action_logon()

    def action_logon(self) -> None:
        if self.submitting:
            return
        if not self.pin_input.value:
            self.show_message("Enter your PIN, then select Logon.", "warning")
            return
        pin = Secret(self.pin_input.value)  # the one holder of the PIN from here on; the field is emptied
        self.pin_input.clear()
        summary = self.card_app.summary
        if summary is not None and summary.pin_retries == 0:
            pin.wipe()
            self.show_blocked()
            return
        if summary is not None and summary.pin_retries == 1:
            def confirmed(answer: bool | None) -> None:
                self._confirming = False
                if answer:
                    self._logon_worker = self.logon(pin)
                else:
                    pin.wipe()
                    self.show_message(f"PIN not sent. {sentence(tries_left(1))}", "warning")

            self._confirming = self.card_app.open_dialog(last_try_dialog("PIN"), confirmed) is not None
            return
        self._logon_worker = self.logon(pin)

    @work(exclusive=True, group="card", exit_on_error=False, description="Logging on")
    async def logon(self, pin: Secret) -> None:
        """Log on with ``pin`` through the card service and report the outcome; the PIN is wiped afterwards."""
        app = self.card_app
        button = self.query_one("#logon-button", Button)
        button.disabled = True
        self.show_message("Checking your PIN…", "info")
        try:
            await asyncio.wrap_future(app.backend.log_on(pin))
        except InvalidPinError as exc:
            self.pin_input.clear()
            left = exc.attempts_remaining
            app.note_tries("PIN", left)
            if left is None:  # a PKCS#11 token may say only that few are left
                self.show_message("Wrong PIN." + (f" {FEW_TRIES}" if exc.few_left else ""))
            else:
                self.show_message(f"Wrong PIN: {tries_left(left)}.")
            return
        except PinFormatError as exc:
            self.pin_input.clear()  # typing on after a short PIN would send both as one and spend a try
            self.show_message(f"{exc} {exc.next_step}")
            return
        except PinBlockedError:
            self.pin_input.clear()
            app.note_tries("PIN", 0)
            self.show_blocked()
            return
        except (CardRemovedError, NoCardError):
            self.show_message("The card was removed. Insert your smartcard and log on again.")
            return
        except CardError as exc:
            self.show_error(exc)
            return
        finally:
            button.disabled = False
            pin.wipe()
        self.pin_input.clear()
        app.note_tries("PIN", None)
        self.app.post_message(LoggedOn())

