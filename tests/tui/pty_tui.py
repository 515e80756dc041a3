"""The real ``cardrenew`` TUI under a pseudo-terminal, for tests that send it keys and signals.

Reads everything the program writes (the raw bytes, for checks such as "the alternate screen was
left"), and offers the same output as plain text (escape sequences removed) to wait for what a
pane shows. Every wait is bounded; the process is killed by its PID if a test leaves it running.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

CARDRENEW = [sys.executable, "-m", "tui"]
_ESCAPES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78M]")

LEFT_ALTERNATE_SCREEN = b"\x1b[?1049l"
CURSOR_SHOWN = b"\x1b[?25h"


class PtyTui:
    """``cardrenew ARGS`` with its stdin, stdout and stderr on a new pseudo-terminal (80×24 unless given).

    Args:
        args: the command-line arguments after ``cardrenew``.
        env: extra environment variables.
        cwd: the working directory.
    """

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
                 size: tuple[int, int] = (100, 32)) -> None:
        master, slave = pty.openpty()
        import fcntl
        import struct
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        full_env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(size[0]), LINES=str(size[1]), **(env or {}))
        full_env.pop("TEXTUAL_DRIVER", None)
        self.proc = subprocess.Popen(CARDRENEW + args, stdin=slave, stdout=slave, stderr=slave, env=full_env,
                                     cwd=cwd, start_new_session=True)
        os.close(slave)
        self.master = master
        self.output = bytearray()

    # -- reading -------------------------------------------------------------------------------
    def read(self, timeout_s: float = 0.1) -> None:
        """Collect what the program wrote within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(0.0, left))
            if not ready:
                return
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the program ended and closed the terminal
                return
            if not chunk:
                return
            self.output += chunk

    def text(self, start: int = 0) -> str:
        """The output from byte ``start`` on, without escape sequences (words of a pane stay whole)."""
        return _ESCAPES.sub(b"", bytes(self.output[start:])).decode("utf-8", "replace")

    def wait_text(self, needle: str, timeout_s: float = 60.0, start: int = 0) -> None:
        """Wait until ``needle`` was written (after byte ``start``); fail with the tail after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while needle not in self.text(start):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.read(0.2)
                if needle in self.text(start):
                    return
                raise AssertionError(f"{needle!r} not shown (exit {self.proc.poll()}); last output: "
                                     f"{self.text(start)[-1500:]!r}")
            self.read(0.1)

    # -- writing -------------------------------------------------------------------------------
    def send(self, data: str | bytes, pause_s: float = 0.05) -> None:
        os.write(self.master, data.encode() if isinstance(data, str) else data)
        self.read(pause_s)

    def signal(self, signum: int) -> float:
        """Send ``signum``; returns the time it was sent (``time.monotonic``)."""
        self.read(0.05)
        self.proc.send_signal(signum)
        return time.monotonic()

    def wait_exit(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` for the program to end, reading its output; its exit code or None."""
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read(0.05)
        self.read(0.2)
        return self.proc.poll()

    def close(self) -> None:
        """Kill the program (by PID) if it still runs; close the terminal."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            os.close(self.master)
        except OSError:
            pass

    def __enter__(self) -> PtyTui:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def terminal_restored(output: bytes) -> bool:
    """The alternate screen was left and the cursor shown again (what Textual writes at its end)."""
    left = output.rfind(LEFT_ALTERNATE_SCREEN)
    return left >= 0 and CURSOR_SHOWN in output[left:]


SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
