"""The terminal going away (an SSH session dropped, a tmux pane killed) ends the real TUI within
seconds, every time (break-it 13, tester F-2). Was: 1 close in 6 left the process alive for good —
after the read gave EIO the input thread (not a daemon) waited for an exit event nobody set, and
the interpreter's shutdown waited for it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.terminal.harness import Terminal, cardrenew_argv

CLOSES = 10
PIN = b"123456"


@pytest.mark.sweep
@pytest.mark.parametrize("run", range(CLOSES))
def test_closing_the_terminal_ends_the_tui(tmp_path: Path, run: int) -> None:
    terminal = Terminal(cardrenew_argv("--demo"), tmp_path)
    try:
        terminal.wait_for(lambda s: "Alex Example" in s and "Card detected" in s, 90)
        terminal.send(PIN + b"\r")
        terminal.wait_for("Due for renewal", 30)
        if run % 2:
            terminal.send(b"u")  # the update dialog open when the terminal goes
            time.sleep(0.5 + run * 0.1)
        terminal.hang_up()  # the terminal is gone: the child's reads give EIO, it gets SIGHUP
        status = terminal.wait_exit(30)  # a hang detector: it ends in about a second
        assert status == 129, status  # 128 + SIGHUP, as the README says
    finally:
        terminal.close()
