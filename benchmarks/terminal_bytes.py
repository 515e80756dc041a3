"""Section: what the TUI writes to its terminal (issue 15, slow links) — the real ``cardrenew --demo``
under a pseudo-terminal of 80×24: bytes until the logon pane is ready, bytes per second while idle on
each pane (target 0: nothing moves, nothing is sent), and bytes for a whole renewal (Update My Card
to the Card tab after the confirmation). Counted, not timed: the same on any machine."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from tests.terminal.harness import Terminal, cardrenew_argv

PIN = b"123456"
IDLE_SETTLE_S = 1.5
"""Quiet time before an idle window: the pane's own drawing after the key that opened it is not idle."""
IDLE_WINDOW_S = 3.0


def idle_rate(terminal: Terminal, window_s: float = IDLE_WINDOW_S) -> float:
    """Bytes per second the app writes while nobody types, after :data:`IDLE_SETTLE_S` of settling."""
    time.sleep(IDLE_SETTLE_S)
    before = len(terminal.output)
    time.sleep(window_s)
    return (len(terminal.output) - before) / window_s


def measure(home: Path | None = None) -> dict[str, Any]:
    """Run the demo TUI through logon, the panes and a renewal; return the byte counts.

    Raises:
        AssertionError: a pane did not appear (a hang detector, never a speed check).
    """
    terminal = Terminal(cardrenew_argv("--demo"), home or Path(tempfile.mkdtemp(prefix="cardrenew-bytes-")),
                        columns=80, rows=24)
    idle: dict[str, float] = {}
    try:
        terminal.wait_for(lambda s: "Alex Example" in s and "Card detected" in s, 90)
        to_logon = len(terminal.output)
        idle["logon"] = idle_rate(terminal)
        terminal.send(PIN + b"\r")
        terminal.wait_for("Due for renewal", 30)
        idle["card"] = idle_rate(terminal)
        terminal.send(b"d")
        terminal.wait_for("Issuer", 15)
        idle["certificates"] = idle_rate(terminal)
        start = len(terminal.output)
        terminal.send(b"u")
        terminal.wait_for("Updates are available", 30)
        idle["update_dialog"] = idle_rate(terminal)
        terminal.send(b"\r")
        terminal.wait_for("Enter your Passcode (PIN) again", 15)
        idle["pin_again"] = idle_rate(terminal)
        terminal.send(PIN + b"\r")
        for _ in range(2):  # one Next per certificate
            terminal.wait_for("Next", 90)
            terminal.send(b"\r")
            terminal.wait_for(lambda s: "Next" not in s, 30)
        terminal.wait_for("renewed", 60)
        terminal.send(b"\r")
        terminal.wait_for("Valid", 30)
        renewal = len(terminal.output) - start
        idle["card_renewed"] = idle_rate(terminal)
        terminal.send(b"l")
        terminal.wait_for("logged off", 15)
        idle["logged_off"] = idle_rate(terminal)
    finally:
        terminal.close()
    return {"terminal": "80x24, TERM=xterm-256color, truecolor", "bytes_to_logon_pane": to_logon,
            "bytes_whole_renewal": renewal, "idle_bytes_per_s": idle}


def run(workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    return measure(workdir)
