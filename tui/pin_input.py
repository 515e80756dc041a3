"""The one input widget for a PIN or PUK: masked, and accepting only what a PIN may contain.

Over a slow link the bytes of one key can arrive apart (``ESC``, then ``[A`` 120 ms later); the
parser then reports Escape and the text ``[A``. An ordinary Input would take ``[A`` and the holder
would send ``[A123456`` and lose a try (issue 12 item 5). A :class:`PinInput` refuses every
character outside ``ui.pin_characters`` (default the digits 0–9: PIV PINs are digits, SP 800-73-4
Part 2 §2.4.3, and so is the portal's PIN field), one keystroke at a time and a paste as a whole;
a refused character rings the bell and leaves the field as it was.
"""

from __future__ import annotations

import re
from typing import Any

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

    def on_mount(self) -> None:
        if self._characters is None:
            backend = getattr(self.app, "backend", None)
            configured = getattr(getattr(backend, "settings", None), "pin_characters", None)
            if configured:
                self.restrict = pin_restrict(configured)
