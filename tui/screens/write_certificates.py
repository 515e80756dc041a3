"""*Creating card*, then the *Write Certificates* table: Pending → Writing → Done / Failed."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Static

from card.errors import CardError, InvalidPinError, OperationCancelled, PinBlockedError
from card.secret import Secret
from card.service import CardSummary, ProgressKey, RenewalRequest, RenewalResult, RenewalStep, Slot, SlotStatus
from card.words import SIDE_BY_SIDE, Words, sentence
from tui.bridge import TuiReporter
from tui.messages import (CertificateWritten, GotoPane, RenewalEnded, RenewalFinished, RenewalProgressed,
                          SlotRenewalFailed)
from tui.screens.base import Pane
from tui.widgets import PaneFooter, app_header
from tui.screens.dialogs import MessageDialog, NextDialog, format_date

STATUS_STYLE = {"Pending": "dim", "Writing": "bold yellow", "Done": "bold green", "Failed": "bold red"}
WRITING_STEPS = {RenewalStep.GENERATING, RenewalStep.REQUESTING, RenewalStep.ISSUING, RenewalStep.VERIFYING,
                 RenewalStep.WRITING, RenewalStep.READING_BACK, RenewalStep.TEST_SIGNATURE, RenewalStep.AUTHORISING}



logger = logging.getLogger(__name__)

class Stopwatch:
    """Seconds counted while running (``time.monotonic``); :meth:`stop` and :meth:`start` pause and go on."""

    def __init__(self) -> None:
        self._counted = 0.0
        self._since: float | None = None

    @property
    def running(self) -> bool:
        return self._since is not None

    def start(self) -> None:
        if self._since is None:
            self._since = time.monotonic()

    def stop(self) -> None:
        if self._since is not None:
            self._counted += time.monotonic() - self._since
            self._since = None

    @property
    def seconds(self) -> int:
        """Whole seconds counted so far."""
        running = time.monotonic() - self._since if self._since is not None else 0.0
        return int(self._counted + running)


@dataclass
class CertificateRow:
    """One row of the table: what it shows, and the certificate's own clock (its writing time,
    not counting the time the *Next* dialog waited for the holder)."""

    label: str
    slot: ProgressKey
    """The PIV slot, or the token's key (its Key ID shows in the column *Key ID*)."""
    old_expiry: str
    status: str = "Pending"
    new_expiry: str = ""
    clock: Stopwatch = field(default_factory=Stopwatch)

    @property
    def time_text(self) -> str:
        return f"{self.clock.seconds} s" if self.clock.running or self.status in ("Done", "Failed") else ""


class WriteCertificatesScreen(Pane):
    """Runs the renewal on the card thread and shows its progress.

    Args:
        pin: the PIN entered again (handed to the engine, which wipes it when the run ends; the
            pane forgets it once started).
        summary: the card as read by the update check (labels and old expiry for the rows).
    """

    BINDINGS = [Binding("ctrl+q", "app.quit", "Quit", id="quit", show=False,
                        tooltip="Leave cardrenew (waits for the certificate being written)"),
                Binding("escape", "cancel_ca_wait", "Cancel", id="cancel-ca-wait",
                        tooltip="Stop waiting for the certificate authority (nothing has changed on your card)")]
    NARROW_BELOW = 80
    """Below this many columns the table leaves out the old expiry and shows the slot with the label."""

    def __init__(self, pin: Secret, summary: CardSummary) -> None:
        super().__init__()
        self._pin: Secret | None = pin
        self.summary = summary
        self.clock = Stopwatch()
        """The whole update's working time; it stops while a dialog (Next) waits for the holder."""
        self.rows: dict[str, CertificateRow] = {}
        self._paused: list[Stopwatch] = []
        """The clocks a dialog stopped; they go on when it is closed."""
        self.narrow: bool | None = None
        self.running = False
        self.result: RenewalResult | None = None
        self._ca_wait: threading.Event | None = None
        """Set by Escape while only the CA is waited on (before the card is touched); None otherwise."""

    def compose(self) -> ComposeResult:
        yield app_header()
        with Vertical(id="write-panel", classes="panel"):
            yield Label("Creating card", id="write-title", classes="pane-title", markup=False)
            yield Static("Preparing the update…", id="step-text", markup=False)
            yield Static("", id="elapsed", markup=False)
            yield DataTable(id="certificate-table", cursor_type="none", zebra_stripes=False)
            yield Static(SIDE_BY_SIDE if self.summary.info.side_by_side else  # a token that keeps the old key (F-24)
                         "Do not remove your Smartcard during this process.", id="do-not-remove", classes="-warning",
                         markup=False)
        yield PaneFooter()

    @property
    def certificate_table(self) -> DataTable[Text | str]:
        return self.query_one("#certificate-table", DataTable)

    def on_mount(self) -> None:
        self._layout_table()
        self.running = True
        self.clock.start()
        self._ticker = self.set_interval(1.0, self._tick)
        self._tick()
        self.run_renewal()

    def on_resize(self) -> None:
        self._layout_table()

    # -- the clocks: they count only while this pane is on top --------------------------------
    def on_screen_suspend(self) -> None:
        """A dialog (Next, an error) waits for the holder: stop the clocks until it is closed."""
        self._paused = [watch for watch in (self.clock, *(row.clock for row in self.rows.values())) if watch.running]
        for watch in self._paused:
            watch.stop()
        if self.running:
            self.query_one("#elapsed", Static).update(f"Elapsed: {self.clock.seconds} s (paused)")

    def on_screen_resume(self) -> None:
        for watch in self._paused:
            watch.start()
        self._paused = []
        self._tick()

    def _tick(self) -> None:
        if self.running and self.clock.running:
            self.query_one("#elapsed", Static).update(f"Elapsed: {self.clock.seconds} s")
        for row in self.rows.values():
            if row.clock.running:
                self._show_row(row)

    # -- rows ------------------------------------------------------------------------------
    def _layout_table(self) -> None:
        """(Re)build the columns for the pane's width; at 60 columns Status and Time still show."""
        narrow = self.size.width < self.NARROW_BELOW if self.size.width else False
        if narrow == self.narrow:
            return
        self.narrow = narrow
        table = self.certificate_table
        table.clear(columns=True)
        piv = not self.summary.info.side_by_side  # side by side: the token's keys have a Key ID (CKA_ID), no slot
        if narrow:
            table.add_column("Certificate", key="label")
            table.add_column("Status", key="status", width=7)
            table.add_column("Time", key="time", width=5)
            table.add_column("New expiry", key="new")
        else:
            table.add_column("Certificate", key="label")
            table.add_column("Slot" if piv else "Key ID", key="slot")
            table.add_column("Old expiry", key="old")
            table.add_column("Status", key="status", width=9)
            table.add_column("Time", key="time", width=6)
            table.add_column("New expiry", key="new")
        for row in self.rows.values():
            table.add_row(*self._cells(row), key=row.slot.hex)

    def _cells(self, row: CertificateRow) -> list[Text | str]:
        label = Text(f"{row.label} ({row.slot.hex})" if self.narrow else row.label)  # Text: a label is never markup
        status = Text(row.status, STATUS_STYLE[row.status])
        if self.narrow:
            return [label, status, row.time_text, row.new_expiry]
        return [label, row.slot.hex, row.old_expiry, status, row.time_text, row.new_expiry]

    def _show_row(self, row: CertificateRow) -> None:
        table = self.certificate_table
        keys = [str(column.key.value) for column in table.columns.values()]
        for key, cell in zip(keys, self._cells(row)):
            table.update_cell(row.slot.hex, key, cell)

    def _ensure_row(self, slot: ProgressKey) -> CertificateRow:
        if slot.hex in self.rows:
            return self.rows[slot.hex]
        status = self._status_of(slot)
        label = status.setting.label if status else self._label(slot)
        old = status.certificate if status else None
        # on a resume the card may hold the new certificate already: the journal knows the one replaced (fresh-user 7)
        replaced = self.summary.replaced_expiry(slot.hex) or (old.not_valid_after_utc if old else None)
        row = self.rows[slot.hex] = CertificateRow(label, slot, format_date(replaced) if replaced else "–")
        self.certificate_table.add_row(*self._cells(row), key=slot.hex)
        self.query_one("#write-title", Label).update("Write Certificates")
        return row

    def _status_of(self, key: ProgressKey) -> SlotStatus | None:
        """The card's reading of the PIV slot or token key ``key`` (None when it does not list it)."""
        for status in self.summary.slots:
            if isinstance(key, Slot):
                try:
                    if status.slot == key:
                        return status
                except ValueError:  # a side-by-side key is in no PIV slot
                    continue
            elif status.key == key:
                return status
        return None

    def _label(self, key: ProgressKey) -> str:
        """A row's label when the card's reading does not list it: the configured slot's, or the key's own."""
        if isinstance(key, Slot):
            return next((s.label for s in self.card_app.backend.settings.slots if s.slot == key), key.name.title())
        return key.label or key.hex

    def _set_status(self, slot: ProgressKey, status: str) -> None:
        row = self._ensure_row(slot)
        row.status = status
        if status == "Writing":
            row.clock.start()
        elif status != "Pending":
            row.clock.stop()
        self._show_row(row)

    @on(RenewalProgressed)
    def _progressed(self, event: RenewalProgressed) -> None:
        step_text = self.query_one("#step-text", Static)
        if event.slot is None:
            step_text.update(f"{event.step.value}…")
            return
        self._ensure_row(event.slot)
        label = self._ensure_row(event.slot).label
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
        cert = event.result.new_certificate
        if cert is not None:
            self._ensure_row(event.slot).new_expiry = format_date(cert.not_valid_after_utc)
        self._set_status(event.slot, "Done")

    @on(SlotRenewalFailed)
    def _failed(self, event: SlotRenewalFailed) -> None:
        self._set_status(event.slot, "Failed")

    # -- the run ---------------------------------------------------------------------------
    @work(exclusive=True, group="card", exit_on_error=False, description="Renewing certificates")
    async def run_renewal(self) -> None:
        """Renew through the card service; its progress comes back as messages (:mod:`tui.bridge`)."""
        app = self.card_app
        pin, self._pin = self._pin, None
        assert pin is not None
        reporter = TuiReporter(self.app, self, app.shutdown_event)
        # The app's shutdown event is the engine's cancel: a signal stops it before the next
        # certificate, and stops any wait for the CA.
        request = RenewalRequest(pin, progress=reporter, between_slots=reporter.between_slots,
                                 cancel=app.shutdown_event, now=app.now)
        self.running = True
        result: RenewalResult | None = None
        try:
            await self._reach_ca_first()
            result = await asyncio.wrap_future(app.backend.renew(request))
        except CardError as exc:  # refused before anything destructive happened
            if isinstance(exc, InvalidPinError):
                app.note_tries("PIN", exc.attempts_remaining)
            elif isinstance(exc, PinBlockedError):
                app.note_tries("PIN", 0)
            self.query_one("#step-text", Static).update("Stopped. Nothing was changed on your card.")
            title, message, next_step = app.explain_error(exc)
            stopped = f"The last update stopped: {title}. {sentence(message)}\nNext step: {next_step}"
            self.show_error(exc, then=GotoPane("card", stopped=stopped))  # shown while still renewing
            return
        except Exception as exc:  # a fault of ours, not the card's: never a dead end (tester F-12)
            logger.exception("the renewal ended with an unexpected error")
            self.query_one("#step-text", Static).update("Stopped by an unexpected error.")
            stopped = ("The last update stopped with an unexpected error. Select Update My Card to check the card: "
                       f"an update that was under way is resumed. If it happens again, contact {app.backend.settings.ra_contact}.")
            self.show_error(exc, then=GotoPane("card", stopped=stopped))
            return
        finally:
            self.running = False
            self.app.post_message(RenewalEnded(result))  # the app's renewal is over (after the error)
            self.clock.stop()
            self.query_one("#do-not-remove", Static).display = False  # the writing is over
        assert result is not None
        app.note_tries("PIN", None)  # the engine's VERIFY was accepted: the counter is full again
        self.post_message(RenewalFinished(result))

    async def _reach_ca_first(self) -> None:
        """The CA before the card's transaction (tester F-6, as ``renew`` does since break-it 1): a CA
        that does not answer holds no card, and Escape (or a signal) stops the wait — nothing has
        changed on the card yet.

        Raises:
            IssuerError, OperationCancelled: shown by the caller as "Nothing was changed".
        """
        app = self.card_app
        cancel = self._ca_wait = threading.Event()
        self.refresh_bindings()
        self.query_one("#step-text", Static).update(
            "Contacting the certificate authority… (Escape cancels; nothing has changed on your card)")
        done = threading.Event()

        def follow_shutdown() -> None:  # a signal stops this wait as it stops the renewal
            while not done.is_set():
                if app.shutdown_event.wait(0.2):
                    cancel.set()
                    return

        threading.Thread(target=follow_shutdown, name="ca-wait-shutdown", daemon=True).start()
        try:
            await asyncio.to_thread(app.backend.reach_ca, cancel)
        except OperationCancelled as exc:
            raise OperationCancelled("you stopped the wait for the certificate authority; nothing was changed on "
                                     "your card", next_step="Select Update My Card when you want to try again.") from exc
        finally:
            done.set()
            self._ca_wait = None
            self.refresh_bindings()
        self.query_one("#step-text", Static).update("Checking the card…")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_ca_wait":
            return self._ca_wait is not None
        return True

    def action_cancel_ca_wait(self) -> None:
        if self._ca_wait is not None:
            self._ca_wait.set()

    @on(RenewalFinished)
    def _finished(self, event: RenewalFinished) -> None:
        if self.result is not None:
            return  # the same outcome announced twice: its dialog is open already
        result = self.result = event.result
        step_text = self.query_one("#step-text", Static)
        if result.ok:
            step_text.update("All certificates written.")
            self.query_one("#elapsed", Static).update(f"Finished in {self.clock.seconds} s.")
            last = result.slots[-1]
            self.app.push_screen(NextDialog(last, len(result.slots), len(result.slots)), self._confirm)
            return
        step_text.update("The update stopped with an error.")
        self.query_one("#elapsed", Static).update(f"Stopped after {self.clock.seconds} s.")
        failed = next((s for s in result.slots if s.error is not None), None)
        error = result.error or (failed.error if failed else None) or CardError("a certificate was not renewed")
        title, message, next_step = self.card_app.explain_error(error)
        if result.error is not None:  # what stopped the run (a state file's path and cause, tester F-5)
            slot = f"{failed.label} ({failed.slot.hex}) was not renewed. " if failed is not None else ""
            message = f"{slot}{sentence(message)}\n\nNext step: {next_step}"
        elif failed is not None:
            message = f"{failed.label} ({failed.slot.hex}) could not be renewed: {failed.error}."
        self.show_error(Words(title, f"{message}\n\nSelect Abort this issuance to see what was and was "
                              "not renewed, and what to do next."),
                        GotoPane("completed-with-errors", result=result),
                        id="issuance-error-dialog", button="Abort this issuance")

    def _confirm(self, _: bool | None) -> None:
        assert self.result is not None
        result = self.result
        lines = "\n".join(f"  {s.label} ({s.slot.hex}): valid until {format_date(s.new_certificate.not_valid_after_utc)}"
                          for s in result.slots if s.new_certificate is not None)
        self.app.push_screen(MessageDialog("Your card has been updated",
                                           f"Your certificates have been renewed:\n{lines}\n\n"
                                           "Select OK to see them on the Card tab.", id="confirmation-dialog"),
                             self._back_to_card)

    def _back_to_card(self, _: bool | None = None) -> None:
        self.app.post_message(GotoPane("card", renewed=self.result))
