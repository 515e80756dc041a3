"""The real ``cardrenew`` under a pseudo-terminal, fed raw bytes, its screen read back with pyte.

The child gets a pty of its own (``pty.fork``: a new session whose controlling terminal is the
pty's slave side, as an SSH session or a terminal window gives it), a private ``TMPDIR`` and XDG
directories, so the demo card's state file (``$TMPDIR/cardrenew-demo-*/card.json``, which holds
the PIN retry counter) can be read while it runs. Every wait is bounded; :meth:`close` ends the
child by its PID.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import select
import signal
import struct
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pyte

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def cardrenew_argv(*args: str) -> list[str]:
    """The installed ``cardrenew`` (the console script), else ``python -m tui``."""
    script = BIN / "cardrenew"
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "tui", *args]


class Terminal:
    """One child process on a pty of ``columns``×``rows``; its output is parsed by pyte."""

    def __init__(self, argv: list[str], home: Path, *, env: Mapping[str, str] | None = None,
                 columns: int = 100, rows: int = 30) -> None:
        self.home = home
        self.columns, self.rows = columns, rows
        environ = {k: v for k, v in os.environ.items()
                   if k not in ("CARDRENEW_CONFIG", "ESCDELAY", "SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY",
                                "TEXTUAL_DRIVER", "NO_COLOR", "TEXTUAL")}
        for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "TMPDIR"):
            (home / name).mkdir(parents=True, exist_ok=True)
            environ[name] = str(home / name)
        environ.update({"TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows),
                        "COLORTERM": "truecolor", "LANG": "C.UTF-8"})
        environ.update(env or {})
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.output = bytearray()
        """Every byte the child wrote to the terminal."""
        self._lock = threading.Lock()
        self._hanging_up = threading.Event()
        self.exit_status: int | None = None
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once (the parent has threads)
            try:
                os.chdir(ROOT)
                os.execve(argv[0], argv, environ)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self._reader = threading.Thread(target=self._read, name="pty-reader", daemon=True)
        self._reader.start()

    # -- output -----------------------------------------------------------------------------------
    def _read(self) -> None:
        while True:
            if self._hanging_up.is_set():
                return
            if not select.select([self.fd], [], [], 0.1)[0]:
                continue  # (a read that blocks would keep the pty open after hang_up closed it)
            try:
                data = os.read(self.fd, 65536)
            except OSError as error:
                if error.errno == errno.EINTR:
                    continue
                return  # EIO: the child closed its side
            if not data:
                return
            with self._lock:
                self.output += data
                try:
                    self.stream.feed(data)
                except Exception:  # noqa: BLE001 - pyte trips on a few rare sequences; keep reading
                    pass

    def text(self) -> str:
        """The screen as plain text, one line per row."""
        with self._lock:
            return "\n".join(self.screen.display)

    def wait_for(self, condition: Callable[[str], object] | str, timeout_s: float = 30.0) -> str:
        """Wait until the screen satisfies ``condition`` (or contains the string); returns the screen."""
        check = (lambda text: condition in text) if isinstance(condition, str) else condition
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.text()
            if check(text):
                return text
            if not self.alive():
                raise AssertionError(f"cardrenew exited ({self.exit_status}) while waiting; screen:\n{text}\n"
                                     f"last output: {bytes(self.output[-1500:])!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {condition!r}; screen:\n{text}")
            time.sleep(0.05)

    def settle(self, quiet_s: float = 0.5, timeout_s: float = 10.0) -> str:
        """Wait until the child has written nothing for ``quiet_s`` (bounded); returns the screen."""
        deadline = time.monotonic() + timeout_s
        last, since = len(self.output), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = len(self.output)
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                break
        return self.text()

    # -- input ------------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Write ``data`` to the terminal as one burst (as a terminal sends one key or a paste)."""
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def send_chunks(self, chunks: Iterable[bytes], gap_s: float) -> None:
        """Write each chunk, ``gap_s`` apart (a slow link splitting what the terminal sent)."""
        for i, chunk in enumerate(chunks):
            if i:
                time.sleep(gap_s)
            self.send(chunk)

    # -- the process ------------------------------------------------------------------------------
    def alive(self) -> bool:
        if self.exit_status is not None:
            return False
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.exit_status = os.waitstatus_to_exitcode(status)
        return False

    def wait_exit(self, timeout_s: float = 15.0) -> int:
        deadline = time.monotonic() + timeout_s
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError("cardrenew did not exit")
            time.sleep(0.05)
        assert self.exit_status is not None
        return self.exit_status

    def hang_up(self) -> None:
        """Close the pty's master side as a terminal window or an SSH session that goes away does:
        the child's reads give EIO and, as the session's leader, it gets SIGHUP."""
        self._hanging_up.set()
        self._reader.join(timeout=5)
        os.close(self.fd)
        self.fd = os.open(os.devnull, os.O_RDONLY)  # for close()

    def close(self) -> None:
        """End the child (SIGTERM, then SIGKILL) by its PID and close the pty."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.wait_exit(10)
            except AssertionError:
                os.kill(self.pid, signal.SIGKILL)
                self.wait_exit(10)
        try:
            os.close(self.fd)
        except OSError:
            pass
        self._reader.join(timeout=5)

    # -- the demo card ----------------------------------------------------------------------------
    def demo_card_state(self) -> dict[str, object]:
        """The demo card's state file (``card.json``): ``pin_retries``, ``puk_retries``, …"""
        files = list((self.home / "TMPDIR").glob("cardrenew-demo-*/card.json"))
        assert len(files) == 1, f"expected one demo card, found {files}"
        return json.loads(files[0].read_text())

    def pin_retries(self) -> int:
        return int(self.demo_card_state()["pin_retries"])  # type: ignore[call-overload]
