"""In-process checks of the terminal input layer (tui/driver.py, tui/pin_input.py) and of
``ui.pin_characters``: fast, many examples; the pty tests beside them drive the real process."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from textual import events

from card.config import ConfigError, load_settings
from tui.driver import (SSH_ESCAPE_DELAY_MS, TerminalDriver, WebDriver, _LenientInput, driver_class,
                        escape_delay_ms, terminal_problem)
from tui.pin_input import pin_restrict

SSH = "192.0.2.7 50122 192.0.2.1 22"


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, None),                                             # Textual's 100 ms
    ({"SSH_CONNECTION": SSH}, SSH_ESCAPE_DELAY_MS),          # raised over SSH
    ({"SSH_CONNECTION": SSH, "ESCDELAY": "150"}, None),      # ESCDELAY wins (Textual reads it)
    ({"ESCDELAY": "800"}, None),
    ({"SSH_CONNECTION": ""}, None),
])
def test_escape_delay(environ: dict[str, str], expected: int | None) -> None:
    assert escape_delay_ms(environ) == expected


def test_not_a_terminal_is_named_unless_the_web_driver_talks_over_pipes(tmp_path: Path) -> None:
    with open(os.devnull) as devnull:
        assert "not a terminal" in (terminal_problem(devnull, {}) or "")
        assert terminal_problem(devnull, {"TEXTUAL_DRIVER": "tui.driver:WebDriver"}) is None
    assert terminal_problem(None, {}) is not None
    assert terminal_problem(io.StringIO(), {}) is not None  # no file descriptor at all


def test_driver_choice() -> None:
    assert driver_class({}) is TerminalDriver
    assert driver_class({"TEXTUAL_DRIVER": "textual.drivers.web_driver:WebDriver"}) is WebDriver
    assert driver_class({"TEXTUAL_DRIVER": "tui.driver:WebDriver"}) is WebDriver
    assert driver_class({"TEXTUAL_DRIVER": "somewhere:Else"}) is None  # Textual's own choice


def keys(data: bytes) -> list[str]:
    return [m.key for m in _LenientInput(False).feed(data) if isinstance(m, events.Key)]


def test_a_read_is_cut_at_its_first_undecodable_byte() -> None:
    assert keys(b"\xc3\x28") == []           # invalid UTF-8: Textual 8.2.8 raised here
    assert keys(b"\x1b[M \xa0!") == []       # X10 mouse report beyond column 95
    assert keys(b"\x9b2J") == []             # an 8-bit CSI: its "2J" is not typed
    assert keys("é1".encode()) == ["é", "1"]
    assert keys(b"123456\r\xc3\x28") == [*"123456", "enter"]  # what came before the noise is kept  # valid UTF-8 is read as before
    lenient = _LenientInput(False)
    assert list(lenient.feed(b"\xe2\x82")) == []      # a truncated character …
    assert [m.key for m in lenient.feed(b"12")] == ["1", "2"]  # … does not cost the next read


def test_an_unknown_escape_sequence_types_nothing() -> None:
    assert keys(b"\x1b[<0;12\x1b[A") == ["up"]  # a cut-off mouse report, then Up
    assert keys(b"\x1b[1;5A") == ["ctrl+up"]


@settings(max_examples=2000, derandomize=True, database=None, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_no_byte_stream_raises(chunks: list[bytes]) -> None:
    lenient = _LenientInput(False)
    for chunk in chunks:
        list(lenient.feed(chunk))
        list(lenient.tick())


def test_pin_restrict() -> None:
    import re

    pattern = pin_restrict("0123456789")
    assert re.fullmatch(pattern, "123456") and re.fullmatch(pattern, "")
    assert not re.fullmatch(pattern, "[A123456") and not re.fullmatch(pattern, "12\x0334")
    assert re.fullmatch(pin_restrict("ab]^-\\"), "]^-\\ab")  # regex metacharacters are escaped


def test_ui_pin_characters(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert load_settings(None).pin_characters == "0123456789"
    config.write_text('[ui]\npin_characters = "0123456789ABCDEF"\n')
    assert load_settings(config).pin_characters == "0123456789ABCDEF"
    for bad in ('""', '"0123 456"', '"0123\\t"', "12"):
        config.write_text(f"[ui]\npin_characters = {bad}\n")
        with pytest.raises(ConfigError, match="pin_characters"):
            load_settings(config)


def test_the_parser_state_read_from_textual_is_there() -> None:
    """The tail rule (break-it finding 5) reads the pending sequence from Textual's parser: this
    fails loudly if a Textual upgrade renames what it reads."""
    lenient = _LenientInput(False)
    assert lenient._pending_sequence() is None
    list(lenient.feed(b"\x1b[1;"))
    assert lenient._pending_sequence() == "\x1b[1;"
    list(lenient.feed(b"5A"))
    assert lenient._pending_sequence() is None


def test_a_paste_over_the_size_bound_is_dropped_whole_with_its_closer() -> None:
    """Break-it finding 6 (size): a paste longer than PASTE_MAX_CHARS is never delivered, not even
    in part, and what follows its closer is handled as keys again."""
    from tui.terminal_input import PASTE_MAX_CHARS
    lenient = _LenientInput(False)
    messages = list(lenient.feed(b"\x1b[200~" + b"1" * (PASTE_MAX_CHARS + 5000)))
    messages += lenient.feed(b"2" * 100 + b"\x1b[20")  # the closer split across reads
    messages += lenient.feed(b"1~9")
    assert len(messages) == 1 and [m.key for m in messages if isinstance(m, events.Key)] == ["9"]
    whole = list(_LenientInput(False).feed(b"\x1b[200~" + b"1" * PASTE_MAX_CHARS + b"\x1b[201~"))
    assert [len(m.text) for m in whole if isinstance(m, events.Paste)] == [PASTE_MAX_CHARS]


def test_a_paste_ends_on_ctrl_q_pressed_while_it_is_open_but_keeps_control_characters_it_holds() -> None:
    lenient = _LenientInput(False)
    assert list(lenient.feed(b"\x1b[200~abc")) == []
    assert [m.key for m in lenient.feed(b"\x11") if isinstance(m, events.Key)] == ["ctrl+q"]
    pasted = [m.text for m in _LenientInput(False).feed(b"\x1b[200~12\x0334\x11\x1b[201~") if isinstance(m, events.Paste)]
    assert pasted == ["12\x0334\x11"]
