"""*Creating card*, then the *Write Certificates* table: Pending → Writing → Done / Failed."""

from __future__ import annotations

import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Label, Static

from card.errors import CardError
from card.piv import Slot
from card.renewal import CardSummary, RenewalContext, RenewalResult, RenewalStep, renew
from card.secret import Secret
from tui.bridge import TuiReporter
from tui.messages import CertificateWritten, RenewalFinished, RenewalProgressed, SlotRenewalFailed
from tui.screens.base import Pane
from tui.screens.dialogs import ErrorDialog, MessageDialog, NextDialog, format_date

STATUS_STYLE = {"Pending": "dim", "Writing": "bold yellow", "Done": "bold green", "Failed": "bold red"}
WRITING_STEPS = {RenewalStep.GENERATING, RenewalStep.REQUESTING, RenewalStep.ISSUING, RenewalStep.VERIFYING,
                 RenewalStep.WRITING, RenewalStep.READING_BACK, RenewalStep.TEST_SIGNATURE, RenewalStep.AUTHORISING}


class WriteCertificatesScreen(Pane):
    """Runs the renewal on the card thread and shows its progress.

    Args:
        pin: the PIN entered again (handed to the engine, which wipes it when the run ends; the
            pane forgets it once started).
        summary: the card as read by the update check (labels and old expiry for the rows).
    """

    BINDINGS = [Binding("ctrl+q", "app.quit", "Quit", id="quit", show=False,
                        tooltip="Leave cardrenew (waits for the certificate being written)")]

    def __init__(self, pin: Secret, summary: CardSummary) -> None:
        super().__init__()
        self._pin: Secret | None = pin
        self.summary = summary
        self.started = time.monotonic()
        self.running = False
        self.result: RenewalResult | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="write-panel", classes="panel"):
            yield Label("Creating card", id="write-title", classes="pane-title", markup=False)
            yield Static("Preparing the update…", id="step-text", markup=False)
            yield Static("", id="elapsed", markup=False)
            yield DataTable(id="certificate-table", cursor_type="none", zebra_stripes=False)
            yield Static("Do not remove your Smartcard during this process.", id="do-not-remove", classes="-warning", markup=False)
        yield Footer(compact=True)

    @property
    def certificate_table(self) -> DataTable[Text | str]:
        return self.query_one("#certificate-table", DataTable)

    def on_mount(self) -> None:
        table = self.certificate_table
        table.add_column("Certificate", key="label")
        table.add_column("Slot", key="slot")
        table.add_column("Old expiry", key="old")
        table.add_column("Status", key="status", width=9)
        table.add_column("New expiry", key="new")
        self.running = True
        self._ticker = self.set_interval(1.0, self._tick)
        self._tick()
        self.run_renewal()

    def _tick(self) -> None:
        if self.running:
            self.query_one("#elapsed", Static).update(f"Elapsed: {int(time.monotonic() - self.started)} s")

    # -- rows ------------------------------------------------------------------------------
    def _ensure_row(self, slot: Slot) -> None:
        table = self.certificate_table
        if slot.hex in table.rows:
            return
        status = next((s for s in self.summary.slots if s.slot == slot), None)
        label = status.setting.label if status else next(
            (s.label for s in self.card_app.backend.settings.slots if s.slot == slot), slot.name.title())
        old = status.certificate if status else None
        table.add_row(Text(label), slot.hex, format_date(old.not_valid_after_utc) if old else "–",
                      Text("Pending", STATUS_STYLE["Pending"]), "", key=slot.hex)
        self.query_one("#write-title", Label).update("Write Certificates")

    def _set_status(self, slot: Slot, status: str) -> None:
        self._ensure_row(slot)
        self.certificate_table.update_cell(slot.hex, "status", Text(status, STATUS_STYLE[status]))

    @on(RenewalProgressed)
    def _progressed(self, event: RenewalProgressed) -> None:
        step_text = self.query_one("#step-text", Static)
        if event.slot is None:
            step_text.update(f"{event.step.value}…")
            return
        self._ensure_row(event.slot)
        label = self.certificate_table.get_cell(event.slot.hex, "label")
        if event.step is RenewalStep.PENDING:
            self._set_status(event.slot, "Pending")
        elif event.step is RenewalStep.DONE:
            self._set_status(event.slot, "Done")
            step_text.update(f"{label} ({event.slot.hex}): renewed and checked.")
        elif event.step is RenewalStep.FAILED:
            self._set_status(event.slot, "Failed")
            step_text.update(f"{label} ({event.slot.hex}): failed")
        else:
            if event.step is not RenewalStep.AUTHORISING:
                self._set_status(event.slot, "Writing")
            step_text.update(f"{label} ({event.slot.hex}): {event.step.value}…")

    @on(CertificateWritten)
    def _written(self, event: CertificateWritten) -> None:
        self._set_status(event.slot, "Done")
        cert = event.result.new_certificate
        if cert is not None:
            self.certificate_table.update_cell(event.slot.hex, "new", format_date(cert.not_valid_after_utc))

    @on(SlotRenewalFailed)
    def _failed(self, event: SlotRenewalFailed) -> None:
        self._set_status(event.slot, "Failed")

    # -- the run ---------------------------------------------------------------------------
    @work(exclusive=True, group="card", exit_on_error=False, description="Renewing certificates")
    async def run_renewal(self) -> None:
        app = self.card_app
        backend = app.backend
        pin, self._pin = self._pin, None
        assert pin is not None
        reporter = TuiReporter(app, self, app.shutdown_event)
        ctx = RenewalContext(backend.settings, backend.issuer, backend.journals, backend.audit,
                             reporter=reporter, now=app.now, between_slots=reporter.between_slots)
        self.running = True
        app.renewing = True
        try:
            result = await app.card_call(lambda session: renew(session, ctx, pin))
        except CardError as exc:  # refused before anything destructive happened
            self.query_one("#step-text", Static).update("Stopped. Nothing was changed on your card.")
            app.show_error(exc, then=app.back_to_card)
            return
        finally:
            self.running = False
            app.renewing = False
        self.post_message(RenewalFinished(result))

    @on(RenewalFinished)
    def _finished(self, event: RenewalFinished) -> None:
        result = self.result = event.result
        self.card_app.renewal_finished(result)
        step_text = self.query_one("#step-text", Static)
        if result.ok:
            step_text.update("All certificates written.")
            self.query_one("#elapsed", Static).update("Finished.")
            last = result.slots[-1]
            self.app.push_screen(NextDialog(last, len(result.slots), len(result.slots)), self._confirm)
            return
        step_text.update("The update stopped with an error.")
        self.query_one("#elapsed", Static).update("Stopped.")
        failed = next((s for s in result.slots if s.error is not None), None)
        error = result.error or (failed.error if failed else None) or CardError("a certificate was not renewed")
        title, message, _ = self.card_app.explain_error(error)
        if failed is not None:
            message = f"{failed.label} ({failed.slot.hex}) could not be renewed: {failed.error}."
        self.app.push_screen(ErrorDialog(title, f"{message}\n\nSelect Abort this issuance to see what was and was "
                                         "not renewed, and what to do next.",
                                         button="Abort this issuance", id="issuance-error-dialog"),
                             lambda _: self.card_app.show_completed_with_errors(result))

    def _confirm(self, _: bool | None) -> None:
        assert self.result is not None
        result = self.result
        lines = "\n".join(f"  {s.label} ({s.slot.hex}): valid until {format_date(s.new_certificate.not_valid_after_utc)}"
                          for s in result.slots if s.new_certificate is not None)
        self.app.push_screen(MessageDialog("Your card has been updated",
                                           f"Your certificates have been renewed:\n{lines}\n\n"
                                           "Select OK to see them on the Card tab.", id="confirmation-dialog"),
                             lambda _: self.card_app.back_to_card(result))

