"""Terminal input that garbage cannot end: cardrenew's Textual drivers (issue 12 items 4, 5, 8).

Textual 8.2.8 decodes terminal input with a *strict* incremental UTF-8 decoder, in
``LinuxDriver.run_input_thread`` and ``WebDriver.run_input_thread``. One invalid sequence (a
terminal set to Latin-1, line noise on a serial console, a bad paste: ``C3 28``) or a legacy X10
mouse report with a coordinate byte ≥ 0x80 (``1B 5B 4D 20 A0 21``, xterm "X10 compatibility mode")
raises ``UnicodeDecodeError`` in the input thread; the Linux driver then panics the app, which ends
with exit code 0 (Textualize/textual#6456). The drivers here read the same bytes and feed the same
parser, but a read is cut at its first byte that is not UTF-8 (see :meth:`_LenientInput.feed`), an escape sequence the parser does not understand types nothing
(:class:`_Parser`), and a parser failure drops the bytes read so far and starts a fresh parser. End of input (stdin at EOF, a
hung-up pseudo-terminal) stops reading instead of spinning on a descriptor that is always ready.

Escape timing: a terminal sends the arrow and function keys as escape sequences; Textual takes an
``ESC`` followed by nothing for ``textual.constants.ESCAPE_DELAY`` (``ESCDELAY`` ms, default 100)
as the Escape key and the rest as typed text. Over SSH, bytes of one key can arrive further apart,
so with ``SSH_CONNECTION`` set and no ``ESCDELAY`` given, :class:`TerminalDriver` raises the delay
to :data:`SSH_ESCAPE_DELAY_MS`.

Use :func:`driver_class` to pick the driver for ``App.driver_class``.
"""

from __future__ import annotations

import codecs
import errno
import os
import selectors
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from textual import constants, log
from textual._xterm_parser import XTermParser
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.drivers.web_driver import WebDriver as TextualWebDriver
from textual.drivers.web_driver import _ExitInput
from textual.message import Message

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


_NOT_GIVEN: Any = object()


class _Parser(XTermParser):
    """Textual's parser, except that an escape sequence it does not understand types nothing.

    Textual "reissues" an unrecognised sequence (an unknown CSI such as ``ESC [ 9 9 z``, a
    truncated mouse report cut off by the next ``ESC``, 32 characters without a match) as the keys
    of its characters, so ``[<0;12`` would be typed into the focused field. In 8.2.8 that reissue
    is the only caller that passes ``alt=`` to ``_sequence_to_key_events`` (``_xterm_parser.py``
    ``reissue_sequence_as_keys``): those characters are dropped here, except a key that follows a
    lone ``ESC`` (``alt=True``: Alt+key, or Escape then a key pressed within the escape delay).
    """

    def _sequence_to_key_events(self, sequence: str, alt: bool = _NOT_GIVEN) -> Iterable[Any]:
        if alt is _NOT_GIVEN:
            return super()._sequence_to_key_events(sequence)
        if alt:
            return super()._sequence_to_key_events(sequence, alt=True)
        log.debug(f"cardrenew: dropped a character of an unrecognised escape sequence: {sequence!r}")
        return ()


class _LenientInput:
    """Decode and parse terminal bytes without ever raising: the part both drivers share."""

    def __init__(self, debug: bool) -> None:
        self._debug = debug
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._parser = _Parser(debug)
        self.dropped_reads = 0
        """How many reads held bytes that are not UTF-8 (and were cut there)."""

    def _decode(self, data: bytes) -> str:
        """``data`` as text, up to its first byte that is not UTF-8 (the rest of the read is dropped)."""
        pending = self._decoder.getstate()[0]
        try:
            return self._decoder.decode(data)
        except UnicodeDecodeError as error:
            self._decoder.reset()
            if pending and error.start < len(pending):
                # The previous read ended in a truncated character: drop that, read this one anew.
                return self._decode(data)
            self.dropped_reads += 1
            log.warning("cardrenew: dropped terminal input that is not UTF-8")
            return bytes(error.object[:error.start]).decode("utf-8")

    def feed(self, data: bytes) -> Iterable[Message]:
        """Messages (keys, mouse, paste, …) for one read of terminal bytes.

        From the first byte that is not UTF-8 to the end of the read, the bytes are dropped: a
        terminal writes whole keys, mouse reports and pastes, so what came before that byte is
        intact, while what follows it is part of the same garbage (line noise, a Latin-1 terminal,
        an X10 mouse report beyond column 95, an 8-bit C1 control such as ``9B`` = CSI, whose
        ``2J`` of ``9B 32 4A`` must not be typed).
        """
        text = self._decode(data)
        if not text:
            return ()
        try:
            return list(self._parser.feed(text))
        except Exception as error:  # noqa: BLE001 - garbage in must never end the app
            log.warning(f"cardrenew: dropped unparsable terminal input ({error.__class__.__name__})")
            self._parser = _Parser(self._debug)
            return ()

    def tick(self) -> Iterable[Message]:
        """Messages due by time alone (a lone ESC after the escape delay)."""
        try:
            return list(self._parser.tick())
        except Exception as error:  # noqa: BLE001
            log.warning(f"cardrenew: dropped unparsable terminal input ({error.__class__.__name__})")
            self._parser = _Parser(self._debug)
            return ()


class TerminalDriver(LinuxDriver):
    """Textual's Linux/macOS terminal driver with lenient input decoding and the SSH escape delay."""

    READ_SIZE = 4096

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        delay = escape_delay_ms(os.environ)
        if delay is not None:
            # The parser reads ``constants.ESCAPE_DELAY`` at every escape (textual/_xterm_parser.py).
            constants.ESCAPE_DELAY = delay / 1000.0  # type: ignore[misc]  # Textual types it Final; read at each escape

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
        reading = True
        try:
            while not self.exit_event.is_set():
                if not reading:
                    self.exit_event.wait(0.1)
                    continue
                for _key, mask in selector.select(0.1):
                    if not mask & selectors.EVENT_READ:
                        continue
                    data = self._read()
                    if data is None:
                        continue
                    if not data:
                        # End of input: select() would report the descriptor ready forever.
                        reading = False
                        selector.unregister(self.fileno)
                        break
                    for message in lenient.feed(data):
                        self.process_message(message)
                for message in lenient.tick():
                    self.process_message(message)
        finally:
            selector.close()


class WebDriver(TextualWebDriver):
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
                            for message in lenient.feed(payload):
                                self.process_message(message)
                        else:  # meta: resize, focus, quit
                            try:
                                self._on_meta(packet_type, payload)
                            except _ExitInput:
                                raise
                            except Exception as error:  # noqa: BLE001 - a bad packet is dropped
                                log.warning(f"cardrenew: dropped a bad meta packet ({error.__class__.__name__})")
                for message in lenient.tick():
                    self.process_message(message)
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
