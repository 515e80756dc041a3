"""The *Readers* pane (issue 15): the renewal queue for support staff — every reader with its card,
the holder, what is due and the state of its renewal; several cards renewed at once, one card
worker per reader, each with the PIN its own holder types in a dialog naming holder and reader.

Reached with **F6** from the logon pane (PC/SC, not logged on); Escape (or F6) goes back once no
card is being renewed. The queue itself (:class:`card.service.ReaderQueue`) is card code; this
pane shows its entries and asks for the PINs. A PIN is never kept here: the dialog's field is
cleared as it answers, and the queue wipes the PIN once its card's renewal ends.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Label, Static

from card.errors import CardChangedError
from card.words import last_try_for, pin_for, pin_for_body
from tui.messages import GotoPane
from tui.screens.base import Pane
from tui.screens.dialogs import PinDialog, last_try_dialog
from tui.widgets import PaneFooter, app_header

if TYPE_CHECKING:
    from card.secret import Secret
    from card.service import QueueEntry, ReaderQueue

COLUMNS = (("reader", "Reader"), ("holder", "Holder"), ("due", "Due"), ("state", "State"))


@dataclass
class QueueChanged(Message, bubble=False):
    """One reader's entry changed (posted from a card worker or the polling thread)."""

    entry: QueueEntry


class QueuePinDialog(PinDialog):
    """The PIN of one card in the queue: the title names the holder and the reader."""

    def __init__(self, entry: QueueEntry) -> None:
        super().__init__(pin_for(entry.holder, entry.reader), id="queue-pin-dialog")
        self.body = pin_for_body(entry.holder)


def due_slots(entry: QueueEntry) -> str:
    """The *Due* column: ``9A 9C`` (the slot numbers of ``entry.due``) or ``resume``."""
    if entry.due.startswith("resume"):
        return "resume"
    return " ".join(re.findall(r"\(([0-9A-F]{2})\)", entry.due))


class ReadersScreen(Pane):
    """Every reader, its card and its renewal; Enter renews the selected card, A every due card."""

    BINDINGS = [
        Binding("enter", "renew_selected", "Renew card", id="renew", tooltip="Ask this card's holder for the PIN"),
        Binding("a", "renew_all", "Renew all due", id="renew-all", tooltip="Ask each due card's holder in turn"),
        Binding("escape,f6", "leave", "Logon pane", id="leave", tooltip="Back to the logon pane"),
        Binding("ctrl+q", "quit_when_idle", "Quit", id="quit", tooltip="Leave cardrenew"),
    ]
    WHEN_CARD_REMOVED = "nothing"  # each reader's card is the queue's to follow
    POLL_S = 1.0
    """How often the readers are looked at (off the UI thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: ReaderQueue | None = None
        self._polling = False
        self._asking: list[str] = []
        """Readers whose holders are still to be asked (*Renew all due*), one dialog at a time."""

    def compose(self) -> ComposeResult:
        yield app_header()
        with Vertical(id="readers-panel", classes="panel"):
            yield Label("Readers", classes="pane-title", markup=False)
            yield Static("Each card holder types their own PIN when their card's dialog names them. "
                         "Enter: renew the selected card; A: every due card in turn.", id="readers-help", markup=False)
            yield DataTable(id="readers-table", cursor_type="row", zebra_stripes=False)
            yield Static("", id="readers-detail", markup=False)
        yield PaneFooter()

    @property
    def table(self) -> DataTable[str]:
        return self.query_one("#readers-table", DataTable)

    def on_mount(self) -> None:
        from card.service import ReaderQueue

        for key, label in COLUMNS:
            self.table.add_column(label, key=key)
        def changed(entry: QueueEntry) -> None:  # on a card worker or the polling thread
            self.post_message(QueueChanged(entry))

        self.queue = ReaderQueue(self.card_app.backend, changed)
        self.table.focus()
        self.set_interval(self.POLL_S, self.poll_readers, name="queue-poll")
        self.call_after_refresh(self.poll_readers)

    def on_unmount(self) -> None:
        if self.queue is not None:
            self.queue.close(wait=False)  # a step under way finishes on its thread; the app's close waits

    # -- the readers -------------------------------------------------------------------------------
    def poll_readers(self) -> None:
        if not self._polling and self.queue is not None:
            self._polling = True
            self._poll()

    @work(group="queue-poll", exit_on_error=False, description="Looking at the card readers")
    async def _poll(self) -> None:
        try:
            assert self.queue is not None
            await asyncio.to_thread(self.queue.poll)
        finally:
            self._polling = False

    @on(QueueChanged)
    def _queue_changed(self, event: QueueChanged) -> None:
        if self.queue is None:
            return
        entry = self.queue.entry(event.entry.reader) or event.entry  # the newest, whatever the order of messages
        row = (entry.reader, entry.holder or "–", due_slots(entry), entry.status)
        if entry.reader in self.table.rows:
            for (key, _), value in zip(COLUMNS, row):
                self.table.update_cell(entry.reader, key, value, update_width=True)
        else:
            self.table.add_row(*row, key=entry.reader)
            self.table.sort("reader")
        self._show_detail()

    @on(DataTable.RowHighlighted, "#readers-table")
    def _row_highlighted(self) -> None:
        self._show_detail()

    @on(DataTable.RowSelected, "#readers-table")
    def _row_selected(self) -> None:
        self.action_renew_selected()  # Enter on the table

    def selected_reader(self) -> str | None:
        if not self.table.row_count:
            return None
        key = self.table.coordinate_to_cell_key(self.table.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

    def _show_detail(self) -> None:
        """Under the table: what happened to the selected card, its reference and the next step."""
        reader = self.selected_reader()
        entry = self.queue.entry(reader) if self.queue is not None and reader else None
        text = ""
        if entry is not None:
            parts = [f"{entry.reader}: {entry.holder or 'no holder name'} — {entry.status}."]
            if entry.due:
                parts.append(f"Due: {entry.due}.")
            if entry.message:
                parts.append(entry.message)
            if entry.reference:
                parts.append(f"Reference: {entry.reference}.")
            if entry.next_step:
                parts.append(f"Next step: {entry.next_step}")
            text = " ".join(parts)
        self.query_one("#readers-detail", Static).update(text)

    # -- renewing ------------------------------------------------------------------------------------
    def action_renew_selected(self) -> None:
        reader = self.selected_reader()
        if reader is not None and not self._asking:
            self._asking = [reader]
            self._ask_next()

    def action_renew_all(self) -> None:
        if self.queue is None or self._asking:
            return
        from card.service import EntryState

        self._asking = [e.reader for e in self.queue.entries() if e.state is EntryState.DUE]
        if not self._asking:
            self.notify("No card is waiting for a renewal.", title="Nothing due")
        self._ask_next()

    def _ask_next(self) -> None:
        """Open the PIN dialog of the next card to ask for (each answer opens the next)."""
        while self._asking and self.queue is not None:
            entry = self.queue.ask_pin(self._asking.pop(0))
            if entry is not None:
                self.app.push_screen(QueuePinDialog(entry), lambda pin, asked=entry: self._pin_entered(asked, pin))
                return
            if not self._asking:
                self.notify("This card is not waiting for a renewal.", title="Nothing to renew")

    def _pin_entered(self, entry: QueueEntry, pin: Secret | None) -> None:
        assert self.queue is not None
        if pin is None:
            self.queue.pin_not_given(entry.reader, entry.card_id)
            self._ask_next()
        elif entry.pin_retries == 1:  # the last-try guard, as on the logon pane (Cancel focused)
            def confirmed(answer: bool | None) -> None:
                if answer:
                    self._start(entry, pin, allow_last_try=True)
                else:
                    pin.wipe()
                    assert self.queue is not None
                    self.queue.pin_not_given(entry.reader, entry.card_id)
                    self.notify(f"PIN not sent to {entry.holder or 'the card'}'s card.", title="Cancelled")
                self._ask_next()

            self.app.push_screen(last_try_dialog("PIN", blocks=last_try_for(entry.holder)), confirmed)
        else:
            self._start(entry, pin)
            self._ask_next()

    def _start(self, entry: QueueEntry, pin: Secret, *, allow_last_try: bool = False) -> None:
        assert self.queue is not None
        try:
            self.queue.renew(entry.reader, entry.card_id, pin, allow_last_try=allow_last_try)
        except CardChangedError as exc:  # the card left, or another is there: nothing was sent
            self.show_error(exc)

    # -- leaving ---------------------------------------------------------------------------------------
    def _busy(self) -> bool:
        if self.queue is not None and self.queue.renewing:
            self.notify("Cards are being renewed. Wait until they have finished.", title="Renewal in progress",
                        severity="warning")
            return True
        return False

    def action_leave(self) -> None:
        if not self._busy():
            self.app.post_message(GotoPane("logon"))

    async def action_quit_when_idle(self) -> None:
        if not self._busy():
            await self.app.action_quit()
