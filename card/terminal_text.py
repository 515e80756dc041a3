"""Outside text made safe to print on a terminal.

A certificate subject, issuer or holder name, a PC/SC reader name, a CA/RA failure reason or a
label comes from a card, a driver or a server we do not control. Printed raw, its control
characters are commands to the terminal: ``ESC ]52;…`` writes the clipboard (ECMA-48 OSC; xterm
"Operating System Commands"), ``ESC [2J`` clears the screen, ``ESC ]0;…`` sets the window title,
an 8-bit C1 CSI (U+009B) does the same as ``ESC [``, and a bidi override (U+202E) shows text
backwards (Unicode TR #9 §2; CVE-2021-42574 "Trojan Source"). :func:`terminal_safe` replaces each
such character by a visible escape (``\\x1b``, ``\\x9b``, ``\\u202e``) and leaves every other
character as it was.
"""

from __future__ import annotations

import re

BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Arabic letter mark, LRM/RLM, the embeddings/overrides U+202A–202E and the isolates U+2066–2069."""

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f" + "".join(sorted(BIDI_CONTROLS)) + "\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every C0 control (U+0000–001F), DEL, C1 control (U+0080–009F), bidi control
    (:data:`BIDI_CONTROLS`) and lone surrogate replaced by a visible escape: ``\\x1b``, ``\\u202e``.

    Args:
        text: any str (e.g. a certificate's holder name as decoded from the card).
        keep_newlines: keep ``\\n`` (for a whole multi-line report of our own); otherwise a line
            break is escaped too, so one outside value stays on one line.

    Returns:
        A str without any of those characters; text without them is returned unchanged.
    """
    if keep_newlines:
        return "\n".join(_UNSAFE.sub(_escape, line) for line in text.split("\n"))
    return _UNSAFE.sub(_escape, text)
