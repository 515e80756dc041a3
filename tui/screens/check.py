"""The Card tab's *Check* (issue 15): the dry run of ``cardrenew renew --check`` from the TUI. It asks
for the PIN (optional: *Without PIN* skips the checks that need it; the last-try question first when
one try is left), runs the door's ``check`` — every check a renewal makes before it changes
anything; nothing on the card changes — and shows each check passed, failed (with its next step) or
skipped, in the same words as the CLI."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Input, Static

from card.secret import Secret
from card.service import CheckOutcome, CheckReport, CheckRequest
from card.words import sentence
from tui.pin_input import PinInput
from tui.screens.dialogs import TextDialog

if TYPE_CHECKING:
    from tui.screens.base import Pane

T = TypeVar("T")
MARK = {CheckOutcome.PASSED: "passed", CheckOutcome.FAILED: "FAILED", CheckOutcome.SKIPPED: "skipped"}


class CheckPinDialog(TextDialog["Secret | None"]):
    """The PIN for the dry run: *Check* (with the PIN typed), *Without PIN* (an empty Secret: the
    checks that need it are skipped), *Cancel* or Escape (None: nothing is checked)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel", tooltip="Close: nothing is checked")]

    def __init__(self) -> None:
        super().__init__("Check this card", "Runs every check a renewal makes first — the card, the certificate "
                         "authority, the management key, the state directory, the renewal grant — and changes "
                         "nothing on your card. Enter your PIN to include the checks that need it, or select "
                         "Without PIN.", buttons=(("ok", "Check"), ("without", "Without PIN"), ("cancel", "Cancel")),
                         id="check-pin-dialog")

    def compose_body(self) -> ComposeResult:
        yield PinInput(placeholder="PIN", id="check-pin-input")

    def focus_default(self) -> None:
        self.query_one("#check-pin-input", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.answer("ok")

    def answer(self, button_id: str) -> None:
        if self.answered:
            return
        field = self.query_one("#check-pin-input", Input)
        if button_id == "ok" and not field.value:
            self.notify("Enter your PIN, or select Without PIN.", severity="warning")
            return
        value = Secret(field.value) if button_id == "ok" else Secret(b"") if button_id == "without" else None
        field.clear()
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class CheckReportDialog(TextDialog[bool]):
    """The dry run's report: the summary, then one line per check with its next step."""

    DEFAULT_CSS = """
    CheckReportDialog > #dialog { width: 100; }
    CheckReportDialog #check-lines { height: auto; max-height: 16; }
    CheckReportDialog .check-item { width: 100%; }
    """
    BINDINGS = [Binding("escape", "close", "Close", id="close", tooltip="Close the report")]

    def __init__(self, report: CheckReport) -> None:
        summary = report.summary()
        super().__init__(summary.title, summary.message, id="check-dialog",
                         variant="primary" if report.ok else "error")
        self.report = report

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="check-lines"):
            for number, item in enumerate(self.report.items):
                text = f"{MARK[item.outcome]:7}  {item.title}: {sentence(item.message)}"
                if item.next_step:
                    text += f"\n         Next step: {item.next_step}"
                yield Static(text, classes=f"check-item -{item.outcome.value}", id=f"check-item-{number}", markup=False)

    def answer(self, button_id: str) -> None:
        self.dismiss(True)

    def action_close(self) -> None:
        self.dismiss(True)


async def _ask(pane: Pane, dialog: TextDialog[T]) -> T | None:
    """Open ``dialog`` and wait for its answer (None: closed without one, or already open)."""
    answer: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()

    def answered(value: T | None) -> None:
        if not answer.done():
            answer.set_result(value)

    if pane.card_app.open_dialog(dialog, answered) is None:
        return None
    try:
        return await answer
    except asyncio.CancelledError:  # the worker was replaced or the app closes: nothing is checked
        if dialog in pane.app.screen_stack and not dialog.answered:
            dialog.dismiss(None)
        raise


async def run_check(pane: Pane) -> CheckReport | None:
    """The *Check* action, from a worker of ``pane``: the PIN (optional, the last-try guard first),
    the door's dry run, the report. Returns it (None: cancelled). Card errors go to the app's funnel."""
    app = pane.card_app
    left = await app.tries_left("PIN")
    pin: Secret | None = None
    if left != 0:  # a blocked PIN is checked without one (the report says it is blocked)
        pin = await _ask(pane, CheckPinDialog())
        if pin is None:
            pane.notify("Nothing was checked.", title="Cancelled")
            return None
        if not pin:
            pin = None
        elif not await pane.confirm_last_try("PIN", left):
            pin.wipe()
            pane.notify("PIN not sent. Nothing was checked.", title="Cancelled")
            return None
    try:
        report = await asyncio.wrap_future(app.backend.check(CheckRequest(pin, refuse_last_try=False)))
    finally:
        if pin is not None:
            pin.wipe()
    pin_item = next((i for i in report.items if i.check == "pin"), None)
    if pin_item is not None and pin_item.outcome is not CheckOutcome.SKIPPED:
        app.note_tries("PIN", None if pin_item.outcome is CheckOutcome.PASSED else await app.tries_left("PIN"))
    app.open_dialog(CheckReportDialog(report))
    return report
