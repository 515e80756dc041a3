"""The one input widget for a PIN or PUK: masked, and accepting only what a PIN may contain.

Over a slow link the bytes of one key can arrive apart (``ESC``, then ``[A`` 120 ms later); the
parser then reports Escape and the text ``[A``. An ordinary Input would take ``[A`` and the holder
would send ``[A123456`` and lose a try (issue 12 item 5). A :class:`PinInput` refuses every
character outside ``ui.pin_characters`` (default the digits 0–9: PIV PINs are digits, SP 800-73-4
Part 2 §2.4.3, and so is the portal's PIN field), one keystroke at a time and a paste as a whole;
a refused character rings the bell and leaves the field as it was.

Nothing of the value ever leaves the field by copy or cut: Textual's Input copies a selection with
Ctrl+C and cuts with Ctrl+X through ``App.copy_to_clipboard``, which writes OSC 52 (the value in
base64) to the terminal, i.e. into the clipboard of whoever is at the other end of an SSH link.
A :class:`PinInput` rings the bell instead and keeps its value; it takes no part in screen text
selection either (``ALLOW_SELECT`` False, :meth:`PinInput.get_selection` None).
"""

from __future__ import annotations

import re
from typing import Any

from textual.selection import Selection
from textual.widgets import Input

DEFAULT_PIN_CHARACTERS = "0123456789"


def pin_restrict(characters: str) -> str:
    """The ``Input(restrict=…)`` regex for a value made only of ``characters`` (or empty)."""
    if not characters:
        raise ValueError("no PIN characters")
    return "[" + "".join(re.escape(c) for c in sorted(set(characters))) + "]*"


class PinInput(Input):
    """A masked Input for a PIN or PUK that accepts only PIN characters.

    Args:
        characters: the characters a PIN may contain; None takes ``ui.pin_characters`` from the
            app's settings (``app.backend.settings.pin_characters``) when mounted, digits until then.
        **kwargs: as for :class:`textual.widgets.Input` (``password`` is always True).
    """

    def __init__(self, characters: str | None = None, **kwargs: Any) -> None:
        kwargs.pop("password", None)
        kwargs.pop("restrict", None)
        kwargs.setdefault("max_length", 16)
        self._characters = characters
        super().__init__(password=True, restrict=pin_restrict(characters or DEFAULT_PIN_CHARACTERS), **kwargs)
        self.cursor_blink = False
        """A steady cursor: a blinking one redrew the field twice a second, ~1.4 KB/s over an idle
        SSH link for as long as the logon pane waits (issue 15, slow links)."""

    def on_mount(self) -> None:
        if self._characters is None:
            backend = getattr(self.app, "backend", None)
            configured = getattr(getattr(backend, "settings", None), "pin_characters", None)
            if configured:
                self.restrict = pin_restrict(configured)

    ALLOW_SELECT = False
    """No screen (mouse) selection over a PIN field: ``Screen.get_selected_text`` never sees it."""

    def action_copy(self) -> None:
        """Ctrl+C: a PIN is never copied (to the app clipboard or, through OSC 52, the terminal's)."""
        self.app.bell()

    def action_cut(self) -> None:
        """Ctrl+X: a PIN is never cut; the field keeps its value."""
        self.app.bell()

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        """No text of a PIN field is ever part of a screen selection."""
        return None
