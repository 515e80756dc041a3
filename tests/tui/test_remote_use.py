"""SSH use (issue 6 item 4): ``ESCDELAY`` is the one Textual reads, and importing the app never
sets it. Over SSH the terminal driver raises the delay itself unless ``ESCDELAY`` is set
(tests/terminal/test_input_units.py, and the pty tests beside it)."""

from __future__ import annotations

import os
import subprocess
import sys


def _escape_delay(env_value: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "ESCDELAY"}
    if env_value is not None:
        env["ESCDELAY"] = env_value
    code = "import tui.app, textual.constants as c; print(c.ESCAPE_DELAY)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    return float(out.stdout.strip())


def test_escdelay_sets_textuals_escape_delay() -> None:
    assert _escape_delay(None) == 0.1  # Textual's default, 100 ms
    assert _escape_delay("400") == 0.4  # README "Over SSH": ESCDELAY=400 cardrenew
