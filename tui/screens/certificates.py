"""The *Certificates* tab of the Card pane (the details of each certificate), and what the Card
pane's tabs share: :class:`CardTab` and the words for a slot's state."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import on
from textual.containers import VerticalScroll
from textual.coordinate import Coordinate
from textual.app import ComposeResult
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from card.certificates import fingerprint
from card.service import CardSummary, KeyType, SlotState, SlotStatus
from tui.screens.dialogs import format_date

if TYPE_CHECKING:
    from card.config import Settings
    from tui.screens.base import PaneHost

STATUS_WORDS = {
    SlotState.OK: ("Valid", "-ok"),
    SlotState.DUE: ("Due for renewal", "-due"),
    SlotState.EXPIRED: ("Expired", "-expired"),
    SlotState.EMPTY: ("Empty", "-empty"),
    SlotState.UNREADABLE: ("Unreadable", "-unreadable"),
}

def status_text(status: SlotStatus) -> tuple[str, str]:
    """The words and the CSS class for a slot's state."""
    words, css = STATUS_WORDS[status.state]
    if status.state is SlotState.UNREADABLE and status.error:
        words = f"Unreadable: {status.error}"
    return words, css


class CardTab(TabPane):
    """A tab of the Card pane; ``activate()`` shows it and ``set_focus_within()`` focuses its first control."""

    @property
    def settings(self) -> Settings:
        """The configuration the app runs with."""
        return cast("PaneHost", self.app).backend.settings

    def activate(self) -> None:
        tabs = self.screen.query_one(TabbedContent)
        if self.id:
            tabs.active = self.id

    def set_focus_within(self) -> None:
        focusable = [w for w in self.query("*") if w.can_focus]
        if focusable:
            focusable[0].focus()


def key_type_text(status: SlotStatus) -> str:
    """The certificate's key type as PIV names it (``RSA2048``, ``ECCP256``), or a description."""
    cert = status.certificate
    if cert is None:
        return "–"
    key = cert.public_key()
    try:
        return KeyType.of(key).name
    except Exception:  # noqa: BLE001 - a key type PIV does not name: describe it
        return f"{key.__class__.__name__.lstrip('_')} ({getattr(key, 'key_size', '?')} bits)"


def certificate_details(status: SlotStatus) -> str:
    """Subject, issuer, serial, validity, key type and SHA-256 fingerprint of one slot, as text."""
    cert = status.certificate
    words, _ = status_text(status)
    head = f"{status.setting.label} ({status.name}) — {words}"
    if cert is None:
        return f"{head}\nNo certificate in this slot."
    sha = fingerprint(cert).upper()
    sha_text = ":".join(sha[i:i + 2] for i in range(0, len(sha), 2))
    return "\n".join([
        head,
        f"Subject      {cert.subject.rfc4514_string()}",
        f"Issuer       {cert.issuer.rfc4514_string()}",
        f"Serial       {cert.serial_number:X}",
        f"Valid from   {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
        f"Valid until  {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        + (f" ({status.days_left} days left)" if status.days_left is not None else ""),
        f"Key type     {key_type_text(status)}",
        f"SHA-256      {sha_text}",
    ] + ([f"Note         {status.note}"] if status.note else []))


class CertificatesTab(CardTab):
    """The *Certificates* tab: pick a certificate (arrow keys), its details below."""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="certificates-details"):
            yield DataTable(id="certificate-list", cursor_type="row", zebra_stripes=False)
            yield Static("Select a certificate to see its details.", id="certificate-details", markup=False)

    def on_mount(self) -> None:
        table = self.query_one("#certificate-list", DataTable)
        table.add_column("Certificate", key="label")
        table.add_column("Slot", key="slot")
        table.add_column("Expires", key="expires")
        table.add_column("Status", key="status")
        self.statuses: dict[str, SlotStatus] = {}

    def show(self, summary: CardSummary) -> None:
        table = self.query_one("#certificate-list", DataTable)
        selected = None
        if table.row_count and table.cursor_row < table.row_count:
            selected = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        table.clear()
        self.statuses = {}
        for status in summary.slots:
            cert = status.certificate
            self.statuses[status.name] = status
            table.add_row(Text(status.setting.label), status.name,  # Text: a label is never markup
                          format_date(cert.not_valid_after_utc) if cert else "–", status_text(status)[0],
                          key=status.name)
        if selected in self.statuses:
            table.move_cursor(row=table.get_row_index(selected))
        self.show_details()

    @on(DataTable.RowHighlighted, "#certificate-list")
    def _highlighted(self) -> None:
        self.show_details()

    def show_details(self) -> None:
        table = self.query_one("#certificate-list", DataTable)
        details = self.query_one("#certificate-details", Static)
        if not table.row_count:
            details.update("No certificate to show.")
            return
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        status = self.statuses.get(key or "")
        details.update(certificate_details(status) if status else "")
