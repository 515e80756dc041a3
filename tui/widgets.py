"""Small widgets shared by the panes."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Footer, Header

HEADER_ICON = "≡"
"""The header's icon (it opens the command palette when clicked). Textual's default ``⭘``
(U+2B58) has no glyph in many fonts and shows as a missing-glyph box in browsers (the kiosk) and
in the SVG screenshots; ``≡`` (U+2261) is in code page 437 and so in practically every terminal,
browser monospace and SVG fallback font."""


def app_header() -> Header:
    """The header of every pane: the app's title and sub-title, with :data:`HEADER_ICON`."""
    return Header(icon=HEADER_ICON)


class PaneFooter(Footer):
    """The footer of every pane and dialog: its keys on one line at any width from 60 columns.

    When the keys do not all fit on the line, it leaves out first the command-palette key (Ctrl+P
    and the header icon still open the palette), then the keys whose action is in
    :attr:`SECONDARY_ACTIONS` (they still work, and the palette lists them).
    """

    SECONDARY_ACTIONS = frozenset({"reread_card", "app.quit", "quit"})

    def __init__(self) -> None:
        super().__init__(compact=True)
        self._composed_for_width = 0

    @staticmethod
    def _cells(keys: list[Widget]) -> int:
        """The width of compact footer keys: key, space, description, and a one-cell margin."""
        return sum(len(str(getattr(k, "key_display", ""))) + len(str(getattr(k, "description", ""))) + 2 for k in keys)

    def compose(self) -> ComposeResult:
        width = self._composed_for_width = self.app.size.width
        widgets = list(super().compose())
        palette = [w for w in widgets if w.has_class("-command-palette")]
        keys = [w for w in widgets if w not in palette]
        if width and self._cells(keys) + self._cells(palette) > width:
            palette = []
            if self._cells(keys) > width:
                keys = [k for k in keys if getattr(k, "action", None) not in self.SECONDARY_ACTIONS]
        yield from keys
        yield from palette

    def on_resize(self) -> None:
        if self._composed_for_width and self.app.size.width != self._composed_for_width:
            self.call_after_refresh(self.recompose)
