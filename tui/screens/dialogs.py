"""Dialogs: the reusable :class:`TextDialog` base and the portal's messages.

Enter accepts the default (focused) button of every dialog. Escape only ever cancels something
harmless (a message, the PIN-again dialog before anything changed); it never aborts an issuance.

Every dialog answers once: a second Enter, a second click or Enter then Escape arriving before
the dialog has left the screen are ignored (:meth:`TextDialog.dismiss`), and the app never shows
the same dialog twice (``CardRenewApp.open_dialog``, keyed by :attr:`TextDialog.dedupe_key`).
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.await_complete import AwaitComplete
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static
from tui.pin_input import PinInput

from card.secret import Secret
from card.words import Words
from tui.widgets import PaneFooter

if TYPE_CHECKING:  # the logon pane uses these dialogs before the renewal engine is imported
    from card.service import SlotResult

T = TypeVar("T")


def format_date(value: object) -> str:
    """An aware datetime or a date as ``YYYY-MM-DD``."""
    date = getattr(value, "date", None)
    return (date() if callable(date) else value).isoformat()  # type: ignore[union-attr]  # a date or datetime, as documented


class DialogButton(Button):
    """A dialog's button; the footer shows that Enter presses the focused one (spelt ``Enter``:
    Textual's ``⏎``, U+23CE, is missing from some browser and SVG fonts, like the header's ``⭘``)."""

    BINDINGS = [Binding("enter", "press", "Select", key_display="Enter", tooltip="Press the highlighted button"),
                Binding("left", "step(-1)", "Previous button", show=False),
                Binding("right", "step(1)", "Next button", show=False)]

    def action_step(self, delta: int) -> None:
        """Left/Right: the focus moves to the button beside this one in the dialog's row (it stays
        at either end); nothing is pressed."""
        if self.parent is None:
            return
        row = [button for button in self.parent.children if isinstance(button, DialogButton) and button.focusable]
        if self in row:
            row[max(0, min(len(row) - 1, row.index(self) + delta))].focus()


class TextDialog(ModalScreen[T]):
    """A centred dialog with a title, a body and a row of buttons; the first button is the default.

    It has its own footer, over the pane's: it shows the dialog's keys, not the pane's (which do
    nothing while the dialog is open). Below 80×24 (classes ``-narrow``/``-short``) it is drawn
    more tightly, so that the pane under it stays readable at 60×20.
    """

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (80, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (24, "-tall")]

    DEFAULT_CSS = """
    TextDialog {
        align: center middle;
        background: $background 60%;
    }
    TextDialog > #dialog {
        width: 64;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: thick $primary;
        background: $surface;
        padding: 1 2;
    }
    TextDialog #dialog-title {
        text-style: bold;
        width: 100%;
        margin-bottom: 1;
    }
    TextDialog .dialog-body {
        width: 100%;
        margin-bottom: 1;
    }
    TextDialog #dialog-buttons {
        width: 100%;
        height: auto;
        align: right middle;
    }
    TextDialog #dialog-buttons Button {
        margin-left: 2;
    }
    """

    def __init__(self, title: str, body: str = "", *, buttons: tuple[tuple[str, str], ...] = (("ok", "OK"),),
                 variant: str = "primary", focus: str | None = None, name: str | None = None,
                 id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.dialog_title = title
        self.body = body
        self.buttons = buttons
        self.variant = variant
        self.focus_button = focus or buttons[0][0]
        """The id (without ``-button``) of the button focused when the dialog opens (Enter presses it)."""
        self.answered = False
        """Set by the first :meth:`dismiss`; every later answer is ignored."""

    @property
    def dedupe_key(self) -> tuple[object, ...]:
        """Two dialogs with equal keys are the same dialog: the app never shows it twice."""
        return (type(self).__name__, self.id, self.dialog_title, self.body)

    def dismiss(self, result: T | None = None) -> AwaitComplete:
        """Close with ``result``, once. A second answer (double Enter or click, Enter then Escape)
        would otherwise close the pane under the dialog; it is ignored."""
        if self.answered:
            return AwaitComplete.nothing()
        self.answered = True
        return super().dismiss(result)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.dialog_title, id="dialog-title", markup=False)
            if self.body:
                yield Static(self.body, classes="dialog-body", id="dialog-body", markup=False)
            yield from self.compose_body()
            with Horizontal(id="dialog-buttons"):
                for index, (button_id, label) in enumerate(self.buttons):
                    yield DialogButton(label, id=f"{button_id}-button",
                                       variant=self.variant if index == 0 else "default")  # type: ignore[arg-type]  # a ButtonVariant name
        yield PaneFooter()

    def compose_body(self) -> ComposeResult:
        """Extra widgets between the body and the buttons."""
        yield from ()

    opened_at: float | None = None
    """When the dialog was put on the screen (``time.monotonic``): an Enter, Space, Escape or click
    made before then was meant for what was there before and never answers it (the app drops it)."""

    def on_mount(self) -> None:
        if self.opened_at is None:
            self.opened_at = monotonic()
        self.focus_default()

    def focus_default(self) -> None:
        self.query_one(f"#{self.focus_button}-button", Button).focus()

    @on(Button.Pressed)
    def _button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        button_id = (event.button.id or "").removesuffix("-button")
        self.answer(button_id)

    def answer(self, button_id: str) -> None:
        """Dismiss with the result for ``button_id``."""
        raise NotImplementedError


class MessageDialog(TextDialog[bool]):
    """A message with *OK* (result True) and optionally *Cancel* (False; also Escape)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel", tooltip="Close this message without going on")]

    def __init__(self, title: str, body: str = "", *, ok: str = "OK", cancel: str | None = None,
                 focus_cancel: bool = False, id: str | None = None) -> None:
        buttons = (("ok", ok),) + ((("cancel", cancel),) if cancel else ())
        super().__init__(title, body, buttons=buttons, focus="cancel" if focus_cancel and cancel else None, id=id)

    def answer(self, button_id: str) -> None:
        self.dismiss(button_id == "ok")

    def action_cancel(self) -> None:
        self.dismiss(False if len(self.buttons) > 1 else True)


class ErrorDialog(TextDialog[None]):
    """An error: what happened and the next step. ``button`` is *OK* or *Abort this issuance*.

    Escape closes a plain error; it does nothing when the only button aborts an issuance.
    """

    BINDINGS = [Binding("escape", "close", "Close", id="close", tooltip="Close this message")]

    def __init__(self, title: str, message: str, next_step: str = "", *, button: str = "OK",
                 id: str | None = None) -> None:
        body = message + (f"\n\nNext step: {next_step}" if next_step else "")
        super().__init__(title, body, buttons=(("abort" if button != "OK" else "ok", button),), variant="error", id=id)
        self.add_class("-error")

    def answer(self, button_id: str) -> None:
        self.dismiss(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "close":
            return self.buttons[0][0] == "ok"  # not offered when the only button aborts an issuance
        return True

    def action_close(self) -> None:
        if self.buttons[0][0] == "ok":
            self.dismiss(None)


def error_dialog(words: Words, *, id: str = "error-dialog", button: str = "OK") -> ErrorDialog:
    """The one error funnel's dialog (:meth:`tui.app.CardRenewApp.show_error`): an error's or a
    refused state's words (:class:`card.words.Words`) as an :class:`ErrorDialog`. Nothing else
    makes an ErrorDialog, so every error reads the same way."""
    return ErrorDialog(words.title, words.message, words.next_step, button=button, id=id)


class PinDialog(TextDialog["Secret | None"]):
    """The portal's *PIN again*: the PIN as a :class:`~card.secret.Secret` (OK; Enter; the field is
    cleared at once) or None (Cancel; Escape): nothing changed."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel", tooltip="Abort: nothing is changed on the card")]

    def __init__(self, title: str = "Enter your Passcode (PIN) again", *, id: str | None = None,
                 warning: str = "Do not remove your Smartcard during this process.") -> None:
        super().__init__(title, "For security reasons, enter your Passcode (PIN) again and select OK. "
                                "If you select Cancel the process will be aborted and nothing is changed.",
                         buttons=(("ok", "OK"), ("cancel", "Cancel")), id=id or "pin-dialog")
        self.warning = warning
        """How this card or token is renewed (``card.words.renewal_mode_words``): a PIV card's slot
        is replaced, so it must stay in; a side-by-side token's old certificate keeps working."""

    def compose_body(self) -> ComposeResult:
        yield PinInput(placeholder="PIN", id="pin-again-input")
        yield Static(self.warning, id="do-not-remove", classes="-warning", markup=False)

    def focus_default(self) -> None:
        self.query_one("#pin-again-input", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.answer("ok")

    def answer(self, button_id: str) -> None:
        if self.answered:
            return
        field = self.query_one("#pin-again-input", Input)
        if button_id == "ok" and not field.value:
            self.notify("Enter your PIN, or select Cancel.", severity="warning")
            return
        pin = Secret(field.value) if button_id == "ok" else None
        field.clear()
        self.dismiss(pin)

    def action_cancel(self) -> None:
        self.dismiss(None)


class NextDialog(TextDialog[bool]):
    """ "Certificate N of M renewed" with *Next* (Enter)."""

    def __init__(self, result: SlotResult, number: int, total: int, *, id: str | None = None) -> None:
        cert = result.new_certificate
        valid = f"\nNew certificate valid until {format_date(cert.not_valid_after_utc)}." if cert is not None else ""
        super().__init__(f"Certificate {number} of {total} renewed",
                         f"{result.label} ({result.slot.hex}) has been renewed and written to your card.{valid}",
                         buttons=(("next", "Next"),), variant="success", id=id or "next-dialog")
        self.result_number = number

    def answer(self, button_id: str) -> None:
        self.dismiss(True)


class NewPinDialog(TextDialog["tuple[Secret, Secret] | None"]):
    """Asks for a secret (the current PIN, or the PUK) and a new PIN twice.

    OK (Enter in the last field) returns ``(secret, new_pin)`` as :class:`~card.secret.Secret`
    values (the fields are cleared at once); Cancel or Escape returns None and
    nothing is sent to the card. The PINs are checked here (6–8 bytes, both entries equal) so a
    typing slip never costs a try.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel", tooltip="Close: nothing is changed on the card")]

    def __init__(self, title: str, body: str, secret_label: str, *, ok: str, id: str) -> None:
        super().__init__(title, body, buttons=(("ok", ok), ("cancel", "Cancel")), id=id)
        self.secret_label = secret_label

    def compose_body(self) -> ComposeResult:
        yield Label(self.secret_label, classes="field-label", markup=False)
        yield PinInput(compact=True, id="secret-input")
        yield Label("New Passcode (PIN), 6 to 8 characters:", classes="field-label", markup=False)
        yield PinInput(compact=True, id="new-pin-input")
        yield Label("New Passcode (PIN) again:", classes="field-label", markup=False)
        yield PinInput(compact=True, id="new-pin-again-input")
        yield Static("", id="pin-problem", classes="-error", markup=False)

    def focus_default(self) -> None:
        self.query_one("#secret-input", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "new-pin-again-input":
            self.answer("ok")
        else:
            self.focus_next()

    def problem(self) -> str | None:
        """Why the entries cannot be sent, or None."""
        from card.errors import PinFormatError
        from card.service import check_pin_format

        fields = self._fields()
        if not fields[0].value:
            return f"Enter the {self.secret_label.rstrip(':').lower()}."
        if fields[1].value != fields[2].value:
            return "The two new PINs differ. Enter the new PIN twice."
        try:
            with Secret(fields[0].value) as secret, Secret(fields[1].value) as new:
                check_pin_format(secret)
                check_pin_format(new)
        except PinFormatError as exc:
            return str(exc)
        return None

    def _fields(self) -> tuple[Input, Input, Input]:
        return (self.query_one("#secret-input", Input), self.query_one("#new-pin-input", Input),
                self.query_one("#new-pin-again-input", Input))

    def answer(self, button_id: str) -> None:
        if self.answered:
            return
        if button_id != "ok":
            self.dismiss(None)
            return
        problem = self.problem()
        if problem is not None:
            self.query_one("#pin-problem", Static).update(f"{problem} Nothing was sent to the card.")
            return
        fields = self._fields()
        values = (Secret(fields[0].value), Secret(fields[1].value))
        for field in fields:
            field.clear()
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)


def change_pin_dialog() -> NewPinDialog:
    """The *Change passcode* dialog (current PIN, new PIN twice)."""
    return NewPinDialog("Change passcode (PIN)",
                        "Enter your current PIN, then the new PIN twice. Select Change PIN; Cancel changes nothing.",
                        "Current Passcode (PIN):", ok="Change PIN", id="change-pin-dialog")


def unlock_dialog() -> NewPinDialog:
    """The *Unlock card* dialog (PUK, new PIN twice) for support staff."""
    return NewPinDialog("Unlock card",
                        "Enter the card's PUK (unblocking key), then a new PIN twice. Select Unlock; "
                        "Cancel changes nothing. A wrong PUK uses one of its tries.",
                        "PUK (unblocking key):", ok="Unlock", id="unlock-dialog")


def last_try_dialog(what: str = "PIN", *, blocks: str | None = None) -> MessageDialog:
    """The confirmation in front of a PIN (or PUK) entry when the card has 1 try left.

    *Cancel* is focused: Enter (a second Enter typed in a hurry, too) sends nothing.

    Args:
        what: ``"PIN"`` or ``"PUK"``.
        blocks: what a wrong entry blocks (default: the card; for the PUK: unlocking it here).
    """
    if what == "PUK":
        body = ("Only 1 PUK try is left. If this PUK is wrong, the PUK is blocked and this card can no longer "
                "be unlocked here; only your Registration Authority can replace it. Send this PUK?")
        return MessageDialog("Last PUK try", body, ok="Send PUK", cancel="Cancel", focus_cancel=True,
                             id="last-try-dialog")
    body = blocks or ("Only 1 try is left. If this PIN is wrong, your card is blocked and only your "
                      "Registration Authority can unlock it. Send this PIN?")
    return MessageDialog("Last try before the card is blocked", body, ok="Send PIN", cancel="Cancel",
                         focus_cancel=True, id="last-try-dialog")
