"""Terminal input that garbage cannot end: cardrenew's Textual drivers (issue 12 items 4, 5, 8).

Textual 8.2.8 decodes terminal input with a *strict* incremental UTF-8 decoder, in
``LinuxDriver.run_input_thread`` and ``WebDriver.run_input_thread``. One invalid sequence (a
terminal set to Latin-1, line noise on a serial console, a bad paste: ``C3 28``) or a legacy X10
mouse report with a coordinate byte ≥ 0x80 (``1B 5B 4D 20 A0 21``, xterm "X10 compatibility mode")
raises ``UnicodeDecodeError`` in the input thread; the Linux driver then panics the app, which ends
with exit code 0 (Textualize/textual#6456). The drivers here read the same bytes and feed the same
parser, through :mod:`tui.terminal_input`: a read is cut at its first byte that is not UTF-8, an
escape sequence the parser does not understand types nothing, and a parser failure drops the bytes
read so far and starts a fresh parser. End of input (stdin at EOF, a hung-up pseudo-terminal)
stops reading instead of spinning on a descriptor that is always ready.

Escape timing: a terminal sends the arrow and function keys as escape sequences; Textual takes an
``ESC`` followed by nothing for ``textual.constants.ESCAPE_DELAY`` (``ESCDELAY`` ms, default 100)
as the Escape key and the rest as typed text. Over SSH, bytes of one key can arrive further apart,
so with ``SSH_CONNECTION`` set and no ``ESCDELAY`` given, :class:`TerminalDriver` raises the delay
to :data:`SSH_ESCAPE_DELAY_MS`.

Order: the keys of one read are handled one after the other, as if each came in a read of its
own (:class:`_InOrder`). Textual forwards a key to the focused widget and handles Tab (focus the
next field) only when the key has bubbled back up to the app; by then the app had already forwarded
the digits read with it to the old field, so ``1234<Tab>5678`` in one read put eight digits into
*Current PIN*.

Use :func:`driver_class` to pick the driver for ``App.driver_class``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import selectors
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from textual import constants, log
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.drivers.web_driver import WebDriver as TextualWebDriver
from textual.drivers.web_driver import _ExitInput
from textual.message import Message

from tui.terminal_input import _LenientInput

SSH_ESCAPE_DELAY_MS = 400
"""The escape delay over SSH (ms) when ``ESCDELAY`` is not set: long enough for the bytes of one
key to cross a slow link, short enough that the Escape key still answers at once to a person."""

WEB_DRIVERS = frozenset({"textual.drivers.web_driver:WebDriver", "tui.driver:WebDriver"})
"""``TEXTUAL_DRIVER`` values that mean "input arrives over pipes from textual-serve"."""


def escape_delay_ms(environ: Mapping[str, str]) -> int | None:
    """The escape delay (ms) cardrenew sets, or None to leave Textual's (``ESCDELAY`` or 100 ms).

    ``ESCDELAY`` in the environment always wins (Textual reads it itself); otherwise an SSH session
    (``SSH_CONNECTION`` set and not empty, as OpenSSH's sshd sets it) gets
    :data:`SSH_ESCAPE_DELAY_MS`.
    """
    if environ.get("ESCDELAY", "").strip():
        return None
    if environ.get("SSH_CONNECTION", "").strip():
        return SSH_ESCAPE_DELAY_MS
    return None


def talks_over_pipes(environ: Mapping[str, str]) -> bool:
    """True when the app runs under textual-serve's web driver (input and output are pipes)."""
    return environ.get("TEXTUAL_DRIVER", "") in WEB_DRIVERS


def terminal_problem(stdin: TextIO | None, environ: Mapping[str, str]) -> str | None:
    """Why the TUI cannot run on this standard input, or None if it can.

    Without a terminal on stdin, Textual's driver would select on a descriptor that is always
    ready (``/dev/null``, a closed pipe) and spin at 100 % CPU while nobody can type. The web
    driver of ``cardrenew serve`` talks over pipes and is fine.
    """
    if talks_over_pipes(environ):
        return None
    try:
        if stdin is not None and os.isatty(stdin.fileno()):
            return None
    except (OSError, ValueError):  # closed, or not a real file
        pass
    return ("standard input is not a terminal, so nobody could type into the TUI. Run cardrenew in a "
            "terminal (over SSH: ssh -t), use `cardrenew serve` for a browser, or the headless "
            "`cardrenew status` / `cardrenew renew --pin-stdin` in scripts.")


HANDLED_WAIT_S = 1.0
"""How long the input thread waits for the app to handle one key before it passes on the next (s):
a bound, so a busy or stopping app never stalls input for longer."""


async def _until_the_loop_is_quiet(rounds: int = 3, max_rounds: int = 2000) -> None:
    """Return once the event loop has had nothing else to run for ``rounds`` turns in a row.

    A key travels through Textual as messages between the app's and the widgets' tasks; each hop is
    a callback ready on the loop. So when nothing is ready, every hop of the key (and whatever it
    started: a focus change, a dialog) is done. Reads asyncio's ready queue (``loop._ready`` of
    CPython's ``BaseEventLoop``); another loop without it gets a fixed number of turns.
    """
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)
    quiet = 0
    for turn in range(max_rounds):
        await asyncio.sleep(0)
        if ready is None:
            if turn >= 100:
                return
            continue
        quiet = 0 if ready else quiet + 1
        if quiet >= rounds:
            return


class _InOrder(Driver):
    """Hands the messages of one read to the app one at a time, each after the one before it was
    handled (see the module docstring: Tab, then digits, in one read)."""

    def deliver(self, messages: Iterable[Message]) -> None:
        waiting = True
        for index, message in enumerate(messages):
            if index and waiting:
                waiting = self._wait_until_handled()
            self.process_message(message)

    def _wait_until_handled(self) -> bool:
        """Wait (bounded) until the app has handled what was passed on; False if it did not answer."""
        try:
            future = asyncio.run_coroutine_threadsafe(_until_the_loop_is_quiet(), self._loop)
        except RuntimeError:  # the loop is closed: the app has ended
            return False
        try:
            future.result(HANDLED_WAIT_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return False
        except Exception:  # noqa: BLE001 - input goes on whatever happened to the wait
            return False
        return True


class _TerminalOutput:
    """The terminal for Textual's output thread: once a write fails (EIO after a hang-up, EPIPE),
    the rest of the output is dropped instead of ending that thread. A dead output thread leaves
    its bounded queue unread, and the app's next 30 writes wait on it for good."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self._file.write(text)
            except (OSError, ValueError):  # ValueError: the file was closed
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._file.flush()
            except (OSError, ValueError):
                self.gone = True

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return not self.gone and self._file.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class TerminalDriver(LinuxDriver, _InOrder):
    """Textual's Linux/macOS terminal driver with lenient input decoding and the SSH escape delay."""

    READ_SIZE = 4096

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        if self._file is not None:  # sys.__stderr__; Textual's output thread calls write, flush, fileno
            self._file = _TerminalOutput(self._file)  # type: ignore[assignment]  # duck-typed file
        delay = escape_delay_ms(os.environ)
        if delay is not None:
            # The parser reads ``constants.ESCAPE_DELAY`` at every escape (textual/_xterm_parser.py).
            constants.ESCAPE_DELAY = delay / 1000.0  # type: ignore[misc]  # Textual types it Final; read at each escape

    def _sigcont_application(self, *args: Any) -> None:
        """SIGCONT: resume the terminal only after a suspend (SIGTSTP) of this driver's own.

        Textual restarts application mode on every SIGCONT. A terminal that goes away (an SSH
        session dropped, a pty closed) sends SIGCONT with SIGHUP, and so can ``kill -CONT``; each
        restart started a second output thread and a second input thread. After a hang-up the new
        output thread died on its first write and the app's shutdown waited for good on its full
        queue; after ``kill -CONT`` the older input thread missed the exit event and Ctrl+Q left
        the process alive (5 of 6 tries).
        """
        if self._must_signal_resume:  # set by the SIGTSTP handler, cleared by the resume
            super()._sigcont_application(*args)

    def _read(self) -> bytes | None:
        """Up to ``READ_SIZE`` bytes from the terminal; None if nothing now; b"" at end of input."""
        try:
            return os.read(self.fileno, self.READ_SIZE)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EINTR):
                return None
            return b""  # EIO: the pseudo-terminal's other side has gone (hang-up)

    def run_input_thread(self) -> None:
        """Read the terminal until the driver stops; never raises on what the terminal sends."""
        lenient = _LenientInput(self._debug)
        selector = selectors.DefaultSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        try:
            while not self.exit_event.is_set():
                for _key, mask in selector.select(0.1):
                    if not mask & selectors.EVENT_READ:
                        continue
                    data = self._read()
                    if data is None:
                        continue
                    if not data:
                        # End of input (EIO: the terminal has gone): nothing more will come, so the
                        # thread ends now. It is not a daemon thread, and waiting here for an exit
                        # event that a hang-up's exit path may never set kept the process alive for
                        # good (break-it 13): the interpreter's shutdown waits for this thread.
                        self.deliver(lenient.tick())
                        return
                    self.deliver(lenient.feed(data))
                self.deliver(lenient.tick())
        finally:
            selector.close()


class WebDriver(TextualWebDriver, _InOrder):
    """Textual's web driver (textual-serve talks to it over pipes) with lenient input decoding."""

    def run_input_thread(self) -> None:
        from textual.drivers._byte_stream import ByteStream

        lenient = _LenientInput(self._debug)
        packets = ByteStream()
        try:
            for data in self._input_reader:
                if data:
                    for packet_type, payload in packets.feed(data):
                        if packet_type == "D":  # what the browser typed
                            self.deliver(lenient.feed(payload))
                        else:  # meta: resize, focus, quit
                            try:
                                self._on_meta(packet_type, payload)
                            except _ExitInput:
                                raise
                            except Exception as error:  # noqa: BLE001 - a bad packet is dropped
                                log.warning(f"cardrenew: dropped a bad meta packet ({error.__class__.__name__})")
                self.deliver(lenient.tick())
        except _ExitInput:
            pass
        finally:
            self._input_reader.close()


def driver_class(environ: Mapping[str, str] | None = None) -> type[Driver] | None:
    """The driver for ``App.driver_class``: ours for a terminal or textual-serve, else None.

    None keeps Textual's own choice (Windows, or a ``TEXTUAL_DRIVER`` we do not know).
    """
    environ = os.environ if environ is None else environ
    if talks_over_pipes(environ):
        return WebDriver
    if environ.get("TEXTUAL_DRIVER") or sys.platform == "win32":
        return None
    return TerminalDriver
