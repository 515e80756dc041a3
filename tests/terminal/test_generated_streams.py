"""Hypothesis-generated terminal byte streams fed to the real ``cardrenew --demo`` on a pty over a
simulated slow SSH link (``SSH_CONNECTION`` set, so the escape delay is 400 ms): undecodable bytes,
well-formed, malformed and legacy mouse reports, key sequences split at every byte boundary with
150 ms gaps, and bracketed pastes of control characters and letters.

After every example: the process is alive, the PIN field holds nothing (no character of any
stream may reach it: none of them holds a PIN the holder typed), and the demo card's PIN retry
counter is untouched. One process serves all examples of a test (each example costs a few seconds
of real time); between examples Escape closes whatever a click opened and a click puts the focus
back in the PIN field. The default run takes a couple of minutes; ``-m sweep`` runs many more.

Generated clicks avoid the header and the footer row: a well-formed click on the footer's
*Quit* is a person leaving, not garbage (malformed reports go anywhere).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.terminal.harness import Terminal, cardrenew_argv

COLUMNS, ROWS = 100, 30
SSH = "192.0.2.7 50122 192.0.2.1 22"
GAP_S = 0.15  # between the bytes of a split key: longer than Textual's 100 ms, shorter than 400 ms

KEYS = [b"\x1b[A", b"\x1b[B", b"\x1b[C", b"\x1b[D", b"\x1b[H", b"\x1b[F", b"\x1bOA", b"\x1bOP", b"\x1bOQ",
        b"\x1b[2~", b"\x1b[3~", b"\x1b[5~", b"\x1b[6~", b"\x1b[15~", b"\x1b[17~", b"\x1b[24~", b"\x1b[1;5A",
        b"\x1b[1;2D", b"\x1b[1;3C", b"\x1b[1;5H", b"\x1b[3;5~", b"\x1b[Z", b"\x1b[97;5u", b"\x1b[27u"]
"""Arrow, Home/End, SS3, Insert/Delete/PageUp/Down, F1–F12, modified keys, Shift+Tab, kitty keys."""

not_utf8 = st.lists(st.integers(0x80, 0xFF), min_size=1, max_size=6).map(bytes)
coordinate = st.integers(2, ROWS - 2)
column = st.integers(1, COLUMNS)
x10_mouse = st.tuples(st.integers(0x20, 0xFF), st.integers(0x21, 0xFF), st.integers(0x22, 0xFF)).map(
    lambda t: b"\x1b[M" + bytes(t))
sgr_mouse = st.tuples(st.integers(0, 127), column, coordinate, st.sampled_from("Mm")).map(
    lambda t: f"\x1b[<{t[0]};{t[1]};{t[2]}{t[3]}".encode())
urxvt_mouse = st.tuples(st.integers(32, 99), column, coordinate).map(lambda t: f"\x1b[{t[0]};{t[1]};{t[2]}M".encode())
malformed_mouse = st.one_of(
    st.tuples(st.integers(-(10 ** 20), 10 ** 20), st.integers(-(10 ** 6), 10 ** 6), st.integers(-(10 ** 6), 10 ** 6),
              st.sampled_from(["M", "m", "", ";", ";;M"])).map(lambda t: f"\x1b[<{t[0]};{t[1]};{t[2]}{t[3]}".encode()),
    st.tuples(sgr_mouse, st.integers(2, 8)).map(lambda t: t[0][:t[1]]),  # cut off
    st.tuples(x10_mouse, st.integers(3, 5)).map(lambda t: t[0][:t[1]]),
)
paste_text = st.text(st.sampled_from([chr(c) for c in range(0x00, 0x20) if c != 0x1b] + ["\x7f"]
                                     + list("abcxyzABC[];:-_(){}~^é€ ")), min_size=1, max_size=24)
paste = paste_text.map(lambda text: b"\x1b[200~" + text.encode() + b"\x1b[201~")

pieces = st.lists(st.one_of(
    st.tuples(st.just("whole"), not_utf8),
    st.tuples(st.just("whole"), st.one_of(x10_mouse, sgr_mouse, urxvt_mouse, malformed_mouse)),
    st.tuples(st.just("split"), st.sampled_from(KEYS)),
    st.tuples(st.just("split"), st.one_of(sgr_mouse, x10_mouse.filter(lambda b: max(b[3:]) < 0x80))),
    st.tuples(st.just("whole"), paste),
), min_size=1, max_size=4)


def pin_field_position(screen: str) -> tuple[int, int] | None:
    """(column, row), 1-based, of the logon pane's PIN field, or None when it is not shown."""
    for row, line in enumerate(screen.splitlines(), 1):
        if "▊" in line and ("PIN" in line or "•" in line or line.strip().startswith("▊  ")):
            return line.index("▊") + 4, row
    return None


def feed(t: Terminal, stream: list[tuple[str, bytes]]) -> None:
    for how, data in stream:
        if how == "split":  # every byte boundary, 150 ms apart
            t.send_chunks([data[i:i + 1] for i in range(len(data))], GAP_S)
        else:
            t.send(data)
        time.sleep(0.05)


def back_to_the_pin_field(t: Terminal) -> None:
    """Close whatever a click opened (palette, select list) and click into the PIN field."""
    for _ in range(2):
        t.send(b"\x1b")
        time.sleep(0.6)  # a lone ESC is the Escape key after the 400 ms escape delay
    screen = t.wait_for(lambda s: "Enter your Passcode (PIN):" in s and pin_field_position(s) is not None, 15)
    position = pin_field_position(screen)
    assert position is not None
    x, y = position
    t.send(f"\x1b[<0;{x};{y}M\x1b[<0;{x};{y}m".encode())
    t.settle(0.3)


def run(tmp_path: Path, examples: int) -> None:
    t = Terminal(cardrenew_argv("--demo"), tmp_path, env={"SSH_CONNECTION": SSH}, columns=COLUMNS, rows=ROWS)
    try:
        t.wait_for(lambda s: "Alex Example" in s and "Card detected" in s, 90)
        t.wait_for(lambda s: pin_field_position(s) is not None, 15)
        seen = []

        # No shrinking: one live process serves every example, so a shrunk example runs on the state
        # the failing one left behind and misleads (a sweep failure shrank to a lone b"\x81").
        @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        @given(pieces)
        def never_exits_never_types_never_spends_a_try(stream: list[tuple[str, bytes]]) -> None:
            seen.append(stream)
            feed(t, stream)
            screen = t.settle(0.5)
            assert t.alive(), f"cardrenew exited with {t.exit_status} after {stream!r}"
            assert "•" not in screen, f"a character reached a PIN field after {stream!r}:\n{screen}"
            assert t.pin_retries() == 3, f"a PIN try was spent after {stream!r}"
            back_to_the_pin_field(t)
            assert "•" not in t.text()

        never_exits_never_types_never_spends_a_try()
        # The stream never disturbed the app for the holder: the real PIN, typed now, logs on.
        t.send(b"123456\r")
        t.wait_for("Due for renewal", 30)
        assert t.pin_retries() == 3
        assert len(seen) >= min(examples, 10)
    finally:
        t.close()


def test_generated_byte_streams_over_a_slow_ssh_link(tmp_path: Path) -> None:
    run(tmp_path, examples=12)  # about two minutes: each example is seconds of real time


@pytest.mark.sweep
def test_generated_byte_streams_over_a_slow_ssh_link_sweep(tmp_path: Path) -> None:
    run(tmp_path, examples=40)  # about six minutes
