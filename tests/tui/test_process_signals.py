"""The real program under a pseudo-terminal: SIGTERM / SIGHUP (an SSH session dropping) end it
with a documented code and the terminal restored (F23: no alternate screen or mouse mode left)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest


def _read_until(fd: int, needle: bytes, timeout_s: float) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and needle not in buf:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                buf += os.read(fd, 65536)
            except OSError:
                break
    return buf


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_exits_cleanly_and_restores_the_terminal(signum: int) -> None:
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="80", LINES="24")
    proc = subprocess.Popen([sys.executable, "-m", "tui", "--demo"], stdin=slave, stdout=slave, stderr=slave,
                            env=env, start_new_session=True)
    os.close(slave)
    try:
        shown = _read_until(master, b"Logon", 30)
        assert b"Logon" in shown, shown[-500:]
        proc.send_signal(signum)
        rest = b""
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            rest += _read_until(master, b"\x00never", 0.2)
        assert proc.poll() == 128 + signum
        rest += _read_until(master, b"\x00never", 0.3)
        assert b"\x1b[?1049l" in rest  # left the alternate screen
        assert b"\x1b[?1000l" in rest or b"\x1b[?1003l" in rest  # mouse reporting switched off
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
