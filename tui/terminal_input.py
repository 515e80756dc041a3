"""Terminal bytes to Textual messages without ever raising: the input layer of cardrenew's drivers.

Both drivers of :mod:`tui.driver` (the terminal's and the web kiosk's) read bytes and hand them to
:class:`_LenientInput`, which decodes them leniently and feeds Textual's own XTerm parser
(:class:`_Parser`, a subclass that types nothing for an escape sequence it does not understand).
Why each rule exists is said where it is applied.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from typing import Any

from textual import log
from textual._xterm_parser import XTermParser
from textual.message import Message

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
