"""Break-it finding: a hostile card's holder name (or a reader name) printed raw by ``cardrenew
status`` carried terminal commands: an OSC 52 clipboard write, clear screen, a window title, an
8-bit C1 CSI and a right-to-left override. Every human-readable line of the CLI now goes through
:func:`card.terminal_text.terminal_safe`."""

from __future__ import annotations

import io
import re
import unicodedata

import pytest
from hypothesis import given, settings, strategies as st

from card.emulator.card import SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA
from card.piv import KeyType
from card.service import CardService
from card.terminal_text import BIDI_CONTROLS, terminal_safe

PIN = "123456"
HOSTILE = "Mallory\x1b]52;c;ZXZpbA==\x07\x1b[2J\x1b]0;PWNED\x07\x9b31m\u202eevil\u2066x\u2069\x7f"
READER = "Evil Reader\x1b]52;c;ZXZpbA==\x07\u202e 00"
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def is_unsafe(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cs") or c in BIDI_CONTROLS


@settings(derandomize=True, database=None, deadline=None, max_examples=400)
@given(st.text(alphabet=st.characters(codec=None)))
def test_the_output_holds_no_control_character(text: str) -> None:
    out = terminal_safe(text)
    assert not any(is_unsafe(c) for c in out)
    assert "\n" not in out
    kept = terminal_safe(text, keep_newlines=True)
    assert kept.count("\n") == text.count("\n")
    assert not any(is_unsafe(c) for c in kept.replace("\n", ""))


@settings(derandomize=True, database=None, deadline=None, max_examples=400)
@given(st.text(alphabet=st.characters(codec=None).filter(lambda c: not is_unsafe(c))))
def test_printable_text_is_unchanged(text: str) -> None:
    assert terminal_safe(text) == text
    assert terminal_safe(text, keep_newlines=True) == text


def test_escapes_are_visible() -> None:
    assert terminal_safe("a\x1b[2Jb\x9b\u202e") == "a\\x1b[2Jb\\x9b\\u202e"


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], card: SoftPivCard,
            issuer: object, *args: str) -> tuple[int, str, str]:
    """Human-readable ``cardrenew ARGS`` on the in-process ``card`` behind a hostile reader name."""
    from tui.cli import main

    monkeypatch.setattr("card.pcsc.choose_reader", lambda named=None: READER)
    monkeypatch.setattr("card.backend.pcsc_service", lambda name, *_, **__: CardService(lambda: card, lambda: True))
    monkeypatch.setattr("card.backend.build_issuer", lambda settings, *_, **__: issuer)
    monkeypatch.setattr("sys.stdin", io.StringIO(PIN + "\n"))
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clean(*streams: str) -> None:
    for stream in streams:
        assert not UNSAFE.search(stream), UNSAFE.findall(stream)


def test_status_renew_and_audit_of_a_hostile_holder_print_no_terminal_command(
        ca: LocalCA, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    card = SoftPivCard(create_card_state(ca, holder=HOSTILE, key_type=KeyType.ECCP256))
    code, out, err = run_cli(monkeypatch, capsys, card, ca, "status")
    assert "Mallory\\x1b]52;c;ZXZpbA==\\x07" in out, out  # shown, as a visible escape
    assert_clean(out, err)
    code, out, err = run_cli(monkeypatch, capsys, card, ca, "renew", "--pin-stdin", "--yes")
    assert code == 0, (out, err)
    assert_clean(out, err)
    code, out, err = run_cli(monkeypatch, capsys, card, ca, "audit")
    assert_clean(out, err)
    code, out, err = run_cli(monkeypatch, capsys, card, ca, "status")
    assert_clean(out, err)


def test_log_lines_on_stderr_are_terminal_safe() -> None:
    """The filter on the CLI's stderr log handlers (``tui.cli.entry.OncePerRun``) escapes a logged
    message (e.g. naming a reader), info and warning alike."""
    import logging

    from tui.cli.entry import OncePerRun

    once = OncePerRun()
    for level in (logging.INFO, logging.WARNING):
        record = logging.LogRecord("card.pcsc", level, __file__, 1, "reader %s is busy", (READER,), None)
        assert once.filter(record)
        assert "Evil Reader\\x1b]52" in record.getMessage()
        assert_clean(record.getMessage())
