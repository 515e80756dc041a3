"""Break-it findings 5 and 6 and the order of keys in one read, on the real ``cardrenew --demo`` under a
pseudo-terminal (tests/terminal/harness.py): what the holder sees on the screen, what the card saw
in the demo card's PIN retry counter.

- Finding 5: an escape sequence whose tail arrives after the escape delay (a lone ``ESC``, then
  ``[1;5A`` 150 ms later) used to type the digits of its tail into the PIN field, so the PIN sent
  was wrong and a try was spent.
- Finding 6: a bracketed-paste opener without its closer (``ESC [200~ abc``) made the app deaf to
  every key, Ctrl+Q included.
- Keys in one read: ``p1234<Tab>5678`` in one read lost the digits (they went to the pane behind
  the dialog ``p`` opens); ``1234<Tab>5678`` put all eight digits into the dialog's first field.

Every wait is bounded; each child is ended by its PID.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.terminal.harness import Terminal, cardrenew_argv

PIN = b"123456"
SSH = "192.0.2.7 50122 192.0.2.1 22"

SEQUENCES = {
    "ctrl-up": b"\x1b[1;5A",
    "sgr-click": b"\x1b[<0;12;5M",
    "f5": b"\x1b[15~",
    "f1-ss3": b"\x1bOP",
}
PASTE_OPENER = b"\x1b[200~"


def started(tmp_path: Path, env: dict[str, str] | None = None) -> Terminal:
    t = Terminal(cardrenew_argv("--demo"), tmp_path, env=env)
    t.wait_for(lambda s: "Alex Example" in s and "Card detected" in s, 90)
    return t


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Terminal]:
    t = started(tmp_path)
    try:
        yield t
    finally:
        t.close()


def splits(sequence: bytes) -> list[list[bytes]]:
    """The sequence cut in two at every byte boundary, and cut at every boundary at once."""
    cuts = [[sequence[:i], sequence[i:]] for i in range(1, len(sequence))]
    return cuts + [[sequence[i:i + 1] for i in range(len(sequence))]]


def no_bullet(t: Terminal) -> None:
    screen = t.settle(0.3)
    assert t.alive(), f"exited with {t.exit_status}"
    assert "•" not in screen, f"a character reached the PIN field:\n{screen}"


def send_split_sequences_then_log_on(t: Terminal, gap_s: float) -> None:
    for sequence in SEQUENCES.values():
        for chunks in splits(sequence):
            t.send_chunks(chunks, gap_s)
            no_bullet(t)
    # A paste whose opener was split: what follows is a paste (refused as a whole: it holds a
    # letter), never keys typed one by one.
    for chunks in splits(PASTE_OPENER):
        t.send_chunks(chunks, gap_s)
        t.send(b"12x\x1b[201~")
        no_bullet(t)
    t.send(PIN + b"\r")
    t.wait_for("Due for renewal", 30)
    assert t.pin_retries() == 3


def test_escape_sequences_split_after_the_escape_delay_type_nothing(demo: Terminal) -> None:
    """Finding 5: each sequence cut at every byte boundary, the pieces 150 ms apart (longer than
    Textual's 100 ms escape delay): the tail after the lone ESC is dropped as a whole, so none of
    its digits reaches the PIN field; the PIN typed afterwards logs on and no try is spent."""
    send_split_sequences_then_log_on(demo, gap_s=0.15)


def test_over_ssh_split_sequences_450ms_apart_type_nothing(tmp_path: Path) -> None:
    """Finding 5 over SSH: the escape delay is 400 ms there, so pieces 450 ms apart."""
    t = started(tmp_path, env={"SSH_CONNECTION": SSH})
    try:
        send_split_sequences_then_log_on(t, gap_s=0.45)
    finally:
        t.close()


@pytest.mark.parametrize("pause_s", [0.3, 1.5])
@pytest.mark.parametrize("key", [b"\x11", b"\x03\x11"], ids=["ctrl-q", "ctrl-c-then-ctrl-q"])
def test_ctrl_q_ends_the_app_after_an_unterminated_paste(demo: Terminal, key: bytes, pause_s: float) -> None:
    """Finding 6: ``ESC [200~ abc`` and no closer. Ctrl+Q (after Ctrl+C, which must not be eaten
    either) ends the app, both while the paste is still open and after it was dropped."""
    demo.send(b"\x1b[200~abc")
    time.sleep(pause_s)
    for byte in key:
        demo.send(bytes([byte]))
        time.sleep(0.3)
    assert demo.wait_exit(15) == 0


def test_keys_are_handled_again_after_an_unterminated_paste(demo: Terminal) -> None:
    """Finding 6: after a paste that never ends, the app listens again: the paste is dropped
    (nothing of it typed) and the PIN typed afterwards logs on, no try spent."""
    demo.send(b"\x1b[200~12abc")
    time.sleep(2.5)
    no_bullet(demo)
    demo.send(PIN)
    demo.wait_for("••••••", 10)
    demo.send(b"\r")
    demo.wait_for("Due for renewal", 30)
    assert demo.pin_retries() == 3


def test_a_huge_paste_is_dropped_and_the_app_listens_again(demo: Terminal) -> None:
    """A paste over the size bound is dropped as a whole (and its closer with it)."""
    demo.send(b"\x1b[200~" + b"1" * 200_000 + b"\x1b[201~")
    no_bullet(demo)
    demo.send(PIN + b"\r")
    demo.wait_for("Due for renewal", 30)
    assert demo.pin_retries() == 3


def field_after(screen: str, label: str) -> str:
    """The text of the dialog line below ``label`` (a compact PIN field shows one bullet a character)."""
    lines = screen.splitlines()
    for i, line in enumerate(lines):
        if label in line:
            parts = lines[i + 1].split("█")  # the dialog's frame; the pane behind shows left of it
            return (parts[1] if len(parts) >= 3 else parts[-1]).strip()
    raise AssertionError(f"{label!r} not on screen:\n{screen}")


def test_keys_in_one_read_are_handled_in_order_a_dialog_key_then_its_digits(demo: Terminal) -> None:
    """``p`` (Change passcode) then ``1234<Tab>5678<Tab>8765`` in one read, as a fast typist, a
    paste tool or a slow link delivers them: each key is handled after the one before it, as if
    each came in a read of its own, so the digits land in the dialog that ``p`` opened, four in
    each field. (Textual forwards every key of a read to the widget focused when the read
    arrives: the digits went to the Card tab behind the dialog and were lost. A Tab alone is
    handled by the app's priority binding, tests/terminal/test_terminal_bytes.py.)"""
    demo.send(PIN + b"\r")
    demo.wait_for("Due for renewal", 30)
    demo.settle(0.5)
    demo.send(b"p1234\t5678\t8765")
    screen = demo.wait_for("New Passcode (PIN) again", 15)
    screen = demo.settle(0.6)
    assert field_after(screen, "Current Passcode (PIN):") == "••••", screen
    assert field_after(screen, "New Passcode (PIN), 6 to 8 characters:") == "••••", screen
    assert field_after(screen, "New Passcode (PIN) again:") == "••••", screen
    assert demo.pin_retries() == 3
