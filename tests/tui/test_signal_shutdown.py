"""Issue 12 item 3: SIGTERM, SIGHUP and SIGINT while the card thread waits for the holder (*Next*
between two certificates) end the real program within seconds, with 128 + signal and the terminal
restored. Before: ``on_unmount → service.shutdown`` waited for the card thread, which waited in
``between_slots → call_from_thread`` for the UI that had stopped — a blank screen and a live
process for good (SIGINT was not handled at all).

The full sweep over every renewal step, through pcscd, is tests/integration/test_signal_sweep.py.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.tui.pty_tui import SIGNALS, PtyTui, terminal_restored

DEMO_PIN = "123456"


def to_next_dialog(tui: PtyTui) -> None:
    """Log on to the demo card, Update My Card, PIN again, until "Certificate 1 of 2 renewed"."""
    tui.wait_text("Logon", 60)
    tui.wait_text("Alex Example", 60)
    tui.send(DEMO_PIN + "\r")
    tui.wait_text("Update My Card", 60)
    mark = len(tui.output)
    tui.wait_text("Due for renewal", 60)
    time.sleep(0.5)  # the Card tab's own read finishes
    tui.send("u")
    tui.wait_text("Updates are available", 60, start=mark)
    tui.send("\r")
    tui.wait_text("PIN again", 60, start=mark)
    time.sleep(0.3)
    tui.send(DEMO_PIN + "\r")
    tui.wait_text("Certificate 1 of 2 renewed", 120, start=mark)


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_while_next_waits_ends_the_program(tmp_path, signum: int) -> None:  # type: ignore[no-untyped-def]
    env = {name: str(tmp_path / name) for name in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME")}
    with PtyTui(["--demo"], env=env, cwd=tmp_path) as tui:
        to_next_dialog(tui)
        before = len(tui.output)
        sent = tui.signal(signum)
        code = tui.wait_exit(20)  # bounded: before the fix the process never ended
        took = time.monotonic() - sent
        assert code == 128 + signum, (code, tui.text(before)[-800:])
        assert took < 5, took
        assert terminal_restored(bytes(tui.output[before:]))
