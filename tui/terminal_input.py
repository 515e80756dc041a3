"""Terminal bytes to Textual messages without ever raising: the input layer of cardrenew's drivers.

Both drivers of :mod:`tui.driver` (the terminal's and the web kiosk's) read bytes and hand them to
:class:`_LenientInput`, which decodes them leniently and feeds Textual's own XTerm parser
(:class:`_Parser`, a subclass that types nothing for an escape sequence it does not understand).
Why each rule exists is said where it is applied.

**A sequence split after the escape delay** (break-it finding 5). Textual takes an ``ESC``
followed by nothing for ``ESCAPE_DELAY`` as the Escape key (or, after ``ESC [1``, as the keys of
what it holds) and whatever comes later as typed text. Over a slow link the tail of one key
(``[1;5A`` of Ctrl+Up, ``[<0;12;5M`` of a click, ``[200~`` of a paste) arrives after that delay
and its digits were typed into the PIN field: a wrong PIN and a spent try. So when the parser gives
up on an unfinished sequence, text that then continues it (:class:`_Tail`: ECMA-48 CSI grammar
after ``[``, an SS3 final after ``O``, the three bytes of an X10 mouse report), each character
within :func:`tail_gap_s` of the one before, is dropped as a whole; the opener or closer of a
bracketed paste is passed on whole, so a paste stays a paste.

**A paste that never ends** (break-it finding 6). After ``ESC [200~`` Textual collects everything
as paste text until ``ESC [201~``; a paste cut by a dropped link or line noise made the app deaf to
every key, Ctrl+Q included. A paste is now bounded: it is dropped when nothing arrives for
:func:`tail_gap_s`, when it grows past :data:`PASTE_MAX_CHARS` or lasts longer than
:data:`PASTE_MAX_S` (then the rest of it, up to its closer or a pause, is dropped too), and a read
holding nothing but Ctrl+C or Ctrl+Q (a key pressed while the paste hangs) ends it and is handled
as that key.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Iterable
from typing import Any

from textual import constants, events, log
from textual._xterm_parser import BRACKETED_PASTE_END, BRACKETED_PASTE_START, XTermParser
from textual.message import Message

PASTE_MAX_CHARS = 64 * 1024
"""The longest paste delivered (characters); a longer one is dropped whole (cardrenew's fields
take PINs and PUKs, a few characters)."""
PASTE_MAX_S = 30.0
"""The longest time one paste may take to arrive (s) before it is dropped."""
NEVER_PASTED = frozenset({"\x03", "\x11", "\x1b[99;5u", "\x1b[113;5u"})
"""Ctrl+C and Ctrl+Q, as bytes and as the kitty keyboard protocol sends them: a read holding only
these while a paste is open is the holder pressing them, not paste text."""
_PARSER_STATE = ("terminal_size", "terminal_pixel_size", "mouse_pixels", "last_x", "last_y")
"""What a fresh parser takes over from the one it replaces (what the terminal said about itself)."""
TAIL_MAX_CHARS = 32
"""The longest tail of a split sequence that is recognised (Textual gives up on a sequence at 32)."""


def tail_gap_s() -> float:
    """How long after the previous character a tail's next one may come (s): 1 s, or three escape
    delays when those are longer (over SSH, or a large ``ESCDELAY``)."""
    return max(1.0, 3 * float(constants.ESCAPE_DELAY))


class _Tail:
    """The tail of an escape sequence whose start the parser has already given up on.

    ``text`` is what the parser held (it starts with ``ESC``); :meth:`push` says whether one more
    character continues it. Grammar: ECMA-48 §5.4 control sequences (``ESC [``, parameter bytes
    0x30–0x3F, intermediate bytes 0x20–0x2F, a final byte 0x40–0x7E), SS3 (``ESC O``, optional
    parameters, a final byte), and xterm's X10 mouse report (``ESC [ M`` and three bytes ≥ 0x20).
    """

    MORE, DONE, NOT = "more", "done", "not"

    def __init__(self, text: str, now: float) -> None:
        self.text = "\x1b"
        self.last = now
        self.state = self.MORE
        for character in text[1:]:
            if self.push(character, now) != self.MORE:
                break

    @classmethod
    def after(cls, partial: str, now: float) -> _Tail | None:
        """The tail expected after ``partial`` timed out, or None if nothing can continue it."""
        if not partial.startswith("\x1b"):
            return None
        tail = cls(partial, now)
        return tail if tail.state == cls.MORE else None

    def push(self, character: str, now: float) -> str:
        """MORE (``character`` continues the tail), DONE (it ends it) or NOT (it is no part of it)."""
        self.state = self._verdict(self.text, ord(character))
        if self.state != self.NOT:
            self.text += character
            self.last = now
        return self.state

    def _verdict(self, text: str, code: int) -> str:
        if len(text) >= TAIL_MAX_CHARS:
            return self.NOT
        if text == "\x1b":
            return self.MORE if chr(code) in "[O" else self.NOT
        if text.startswith("\x1b[M"):  # X10 mouse: button, column, row bytes
            if code < 0x20:
                return self.NOT
            return self.DONE if len(text) == 5 else self.MORE
        if text == "\x1b[" and chr(code) == "M":
            return self.MORE
        intermediates = any(0x20 <= ord(c) <= 0x2F for c in text[2:])
        if 0x30 <= code <= 0x3F and not intermediates:
            return self.MORE
        if 0x20 <= code <= 0x2F and text.startswith("\x1b["):
            return self.MORE
        if 0x40 <= code <= 0x7E:
            return self.DONE
        return self.NOT

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
        self._tail: _Tail | None = None
        """The tail of a sequence the parser gave up on, being dropped (see the module docstring)."""
        self.dropped_tails = 0
        """How many late tails of split escape sequences were dropped."""
        self._last_input = time.monotonic()
        self._paste_since: float | None = None
        """When the open paste began (monotonic s), or None."""
        self._discarding = ""
        """While the rest of a dropped paste is skipped: its last characters (a closer may be split), else ""."""
        self.dropped_pastes = 0
        """How many pastes were dropped (unterminated, too long, too large, ended by Ctrl+C/Q)."""

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
        now = time.monotonic()
        self._bound_paste(now)
        if (self._in_paste() or self._discarding) and (text in NEVER_PASTED or set(text) <= {"\x03", "\x11"}):
            self._drop_paste("Ctrl+C or Ctrl+Q was pressed")
        self._last_input = now
        messages: list[Message] = []
        text = self._drop_tail(text, now, messages)
        while text:
            if self._discarding:
                text = self._skip_dropped_paste(text)
                continue
            chunk, text = text[:4096], text[4096:]
            messages += self._parse(chunk)
            if not self._in_paste():
                self._paste_since = None
            elif self._paste_since is None:
                self._paste_since = now
            elif self._paste_buffer_size() > PASTE_MAX_CHARS:
                self._drop_paste(f"it is longer than {PASTE_MAX_CHARS} characters", rest_too=chunk[-5:])
        return [m for m in messages if not (isinstance(m, events.Paste) and len(m.text) > PASTE_MAX_CHARS)]

    # -- bracketed paste (finding 6) --------------------------------------------------------------
    def _parser_local(self, name: str) -> object:
        """A local of the parser's generator (``XTermParser.parse`` in Textual 8.2.8), or None."""
        frame = getattr(self._parser._gen, "gi_frame", None)
        return frame.f_locals.get(name) if frame is not None else None

    def _in_paste(self) -> bool:
        return self._parser_local("bracketed_paste") is True

    def _paste_buffer_size(self) -> int:
        buffer = self._parser_local("paste_buffer")
        return len(buffer) if isinstance(buffer, list) else 0

    def _bound_paste(self, now: float) -> None:
        """Drop an open paste that paused too long or lasted too long (see the module docstring)."""
        if self._in_paste():
            if now - self._last_input > tail_gap_s():
                self._drop_paste("it did not end (no closing ESC [201~)")
            elif self._paste_since is not None and now - self._paste_since > PASTE_MAX_S:
                self._drop_paste(f"it took longer than {PASTE_MAX_S:.0f} s", rest_too=" ")
        elif self._discarding and now - self._last_input > tail_gap_s():
            self._discarding = ""

    def _drop_paste(self, why: str, rest_too: str = "") -> None:
        """Forget the open paste (a fresh parser); with ``rest_too``, skip the rest of it as well."""
        if self._in_paste():
            self.dropped_pastes += 1
            log.warning(f"cardrenew: dropped a paste: {why}")
            self._new_parser()
        self._paste_since = None
        self._discarding = rest_too

    def _skip_dropped_paste(self, text: str) -> str:
        """``text`` after the closer of the paste being skipped, or "" (still skipping)."""
        seen = self._discarding + text
        end = seen.find(BRACKETED_PASTE_END)
        if end < 0:
            self._discarding = seen[-(len(BRACKETED_PASTE_END) - 1):]
            return ""
        self._discarding = ""
        return seen[end + len(BRACKETED_PASTE_END):]

    def _new_parser(self) -> None:
        """Start a fresh parser that knows what the old one knew about the terminal."""
        old, self._parser = self._parser, _Parser(self._debug)
        for name in _PARSER_STATE:
            setattr(self._parser, name, getattr(old, name))

    def _drop_tail(self, text: str, now: float, messages: list[Message]) -> str:
        """``text`` without the late tail of a split sequence it starts with (see :class:`_Tail`)."""
        tail = self._tail
        if tail is None:
            return text
        if now - tail.last > tail_gap_s():
            self._tail = None  # too late to be part of the same key: ordinary input
            return text
        for index, character in enumerate(text):
            verdict = tail.push(character, now)
            if verdict == _Tail.MORE:
                continue
            self._tail = None
            self.dropped_tails += 1
            if verdict == _Tail.NOT:
                log.debug("cardrenew: dropped the late tail of an unfinished escape sequence")
                return text[index:]
            if tail.text in (BRACKETED_PASTE_START, BRACKETED_PASTE_END):
                messages += self._parse(tail.text)  # a paste stays a paste
            else:
                log.debug("cardrenew: dropped the late tail of a split escape sequence")
            return text[index + 1:]
        return ""

    def _parse(self, text: str) -> list[Message]:
        try:
            return list(self._parser.feed(text))
        except Exception as error:  # noqa: BLE001 - garbage in must never end the app
            log.warning(f"cardrenew: dropped unparsable terminal input ({error.__class__.__name__})")
            self._new_parser()
            return []

    def _pending_sequence(self) -> str | None:
        """The escape sequence the parser holds while it waits for its next character, or None.

        Read from the parser's generator (``sequence`` in ``XTermParser.parse``, Textual 8.2.8):
        it waits with a timeout (``Read1(ESCAPE_DELAY)``) only inside an escape sequence.
        tests/terminal/test_input_units.py checks this against the installed Textual.
        """
        parser = self._parser
        if getattr(parser._awaiting, "timeout", None) is None:
            return None
        sequence = self._parser_local("sequence")
        return sequence if isinstance(sequence, str) else None

    def tick(self) -> Iterable[Message]:
        """Messages due by time alone (a lone ESC after the escape delay)."""
        self._bound_paste(time.monotonic())
        pending = self._pending_sequence()
        try:
            messages = list(self._parser.tick())
        except Exception as error:  # noqa: BLE001
            log.warning(f"cardrenew: dropped unparsable terminal input ({error.__class__.__name__})")
            self._new_parser()
            return ()
        if pending is not None and self._pending_sequence() is None:
            # The parser gave up on ``pending``: what continues it from now on is dropped.
            self._tail = _Tail.after(pending, time.monotonic())
        return messages
