"""The byte-level terminal test level (issue 12 items 4, 5, 8): the real ``cardrenew --demo`` on a
pseudo-terminal, fed raw bytes as a broken terminal, a slow SSH link or a bad paste sends them.

What a user would see is read back from the screen (pyte); what the card saw from the demo card's
state file (its PIN retry counter). Each test ends its child by PID; every wait is bounded.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.terminal.harness import ROOT, Terminal, cardrenew_argv

PIN = b"123456"
DIGITS = set("0123456789")

# Bytes that no terminal key produces and that Textual 8.2.8's strict decoder died on, plus
# malformed and legacy mouse reports. None of them may type a letter that a pane binds (u, d, p, l).
GARBAGE = [
    b"\xc3\x28",                    # invalid UTF-8 (a Latin-1 terminal, a bad paste)
    b"\x1b[M \xa0!",                # X10 mouse report, column byte >= 0x80 (column > 95)
    b"\x1b[M#\xff\xff",             # X10 release far right and down
    b"\xff\xfe\xfd",                # bytes that are never UTF-8
    b"\x9b2J",                      # an 8-bit CSI (C1), which is not UTF-8
    b"\x1b[<0;-5;-5M",              # SGR mouse with negative coordinates
    b"\x1b[<99999999999999999999;0;0m",  # SGR mouse: absurd button, coordinates 0 (1-based)
    b"\x1b[<0;12",                  # a mouse report cut off by the next sequence
    b"\x1b[99z",                    # a CSI sequence nobody knows
    b"\x1b[200~\x03\x04\x1a\x1c\x08\x7f\x1b[201~",  # a bracketed paste of control characters
    b"\x1b[200~ab\x00c\x1b\x07(\r\n)\x1b[201~",     # a paste with NUL, ESC, BEL and a line break
    b"\xe2\x82",                    # a truncated 3-byte sequence; the next read starts anew
]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Terminal]:
    terminal = Terminal(cardrenew_argv("--demo"), tmp_path)
    try:
        terminal.wait_for(lambda s: "Alex Example" in s and "Card detected" in s, 90)
        yield terminal
    finally:
        terminal.close()


def pin_field_shows_nothing(screen: str) -> bool:
    """A masked field shows one bullet per character; an empty logon field shows its placeholder."""
    return "•" not in screen


def log_on(terminal: Terminal) -> str:
    terminal.send(PIN + b"\r")
    return terminal.wait_for("Due for renewal", 30)


@pytest.mark.sweep  # a whole renewal on a real process: ~30-60 s
def test_undecodable_bytes_and_mouse_garbage_in_every_pane(demo: Terminal) -> None:
    """Garbage in the logon pane, the Card tab, Change passcode, PIN again, Write Certificates,
    the confirmations and the logged-off pane: the app lives, no PIN field takes a character, and
    the PIN typed afterwards is the one sent (no try is spent)."""
    t = demo

    def feed_garbage() -> str:
        t.send_chunks(GARBAGE, gap_s=0.05)  # one read each, as a terminal writes them
        screen = t.settle(0.6)
        assert t.alive(), f"exited with {t.exit_status}"
        return screen

    assert pin_field_shows_nothing(feed_garbage())
    assert "PIN" in t.text()  # the placeholder: the field is empty
    log_on(t)
    assert t.pin_retries() == 3
    feed_garbage()
    t.send(b"p")  # Change passcode: three PIN fields
    t.wait_for("New Passcode (PIN) again", 15)
    assert pin_field_shows_nothing(feed_garbage())
    t.send(b"\x1b")  # Escape closes it; nothing was sent
    t.wait_for(lambda s: "New Passcode (PIN) again" not in s, 15)
    t.send(b"u")
    t.wait_for("Updates are available", 30)
    feed_garbage()
    t.send(b"\r")
    t.wait_for("Enter your Passcode (PIN) again", 15)
    assert pin_field_shows_nothing(feed_garbage())
    t.send(PIN + b"\r")
    for _ in range(2):  # one Next per certificate, garbage while each is written
        feed_garbage()
        t.wait_for("Next", 90)
        t.send(b"\r")
        t.wait_for(lambda s: "Next" not in s, 30)
    t.wait_for("renewed", 60)
    feed_garbage()
    t.send(b"\r")
    t.wait_for("Valid", 30)
    assert t.pin_retries() == 3
    t.send(b"l")
    t.wait_for("logged off", 15)
    feed_garbage()
    assert t.alive()


def test_an_arrow_key_split_on_a_slow_link_never_reaches_the_pin_field(demo: Terminal) -> None:
    """Issue 12 item 5: Up arrives as ESC, then ``[A`` 150 ms later (longer than the 100 ms escape
    delay): Textual reads Escape and the text ``[A``. The PIN field refuses ``[A``, so the PIN typed
    next is the PIN sent: logged on, no try spent."""
    demo.send_chunks([b"\x1b", b"[A"], gap_s=0.15)
    demo.send_chunks([b"\x1b", b"[D"], gap_s=0.15)
    assert pin_field_shows_nothing(demo.settle(0.4))
    log_on(demo)
    assert demo.pin_retries() == 3


def test_control_characters_in_a_paste_never_reach_the_pin_field(demo: Terminal) -> None:
    """A bracketed paste holding control characters or letters is refused as a whole; a paste of
    the PIN alone is taken (support staff paste from a password manager)."""
    demo.send(b"\x1b[200~12\x0334\x1b[201~")
    demo.send(b"\x1b[200~\t\x7f\x08abc\x1b[201~")
    assert pin_field_shows_nothing(demo.settle(0.4))
    demo.send(b"\x1b[200~" + PIN + b"\x1b[201~")
    demo.wait_for("••••••", 10)
    demo.send(b"\r")
    demo.wait_for("Due for renewal", 30)
    assert demo.pin_retries() == 3


@pytest.mark.parametrize("sequence", [b"\x1b[A", b"\x1b[1;5C", b"\x1b[15~", b"\x1bOP", b"\x1b[<0;3;4M"],
                         ids=["up", "ctrl-right", "f5", "f1-ss3", "sgr-click"])
def test_over_ssh_sequences_split_at_every_byte_with_150ms_gaps_type_nothing(tmp_path: Path, sequence: bytes) -> None:
    """With SSH_CONNECTION set (and no ESCDELAY) the escape delay is 400 ms: a key whose bytes
    arrive 150 ms apart, split at every byte boundary, is still one key; not even its digits reach
    the PIN field, so the PIN typed next logs on."""
    t = Terminal(cardrenew_argv("--demo"), tmp_path, env={"SSH_CONNECTION": "192.0.2.7 50122 192.0.2.1 22"})
    try:
        t.wait_for(lambda s: "Alex Example" in s and "Card detected" in s, 90)
        t.send_chunks([sequence[i:i + 1] for i in range(len(sequence))], gap_s=0.15)
        time.sleep(0.5)
        assert pin_field_shows_nothing(t.settle(0.4)), t.text()
        log_on(t)
        assert t.pin_retries() == 3
    finally:
        t.close()


def test_a_stdin_that_is_not_a_terminal_exits_2_and_says_so(tmp_path: Path) -> None:
    """Issue 12 item 8: with stdin at /dev/null the TUI used to start and spin at 100 % CPU."""
    env = {"XDG_DATA_HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path),
           "PATH": "/usr/bin:/bin", "TERM": "xterm"}
    done = subprocess.run(cardrenew_argv("--demo"), stdin=subprocess.DEVNULL, capture_output=True, env=env,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert b"not a terminal" in done.stderr
    assert b"\x1b[?1049h" not in done.stderr + done.stdout  # the TUI never started


def test_a_crash_of_the_app_exits_non_zero(tmp_path: Path) -> None:
    """Issue 12 item 4: Textual's input thread panics the app on an exception, and the process
    used to exit 0. Here the input decoder is made to fail on purpose at the first key."""
    script = ("import sys, tui.driver as d\n"
              "def boom(self, data):\n"
              "    raise RuntimeError('input decoder failed on purpose')\n"
              "d._LenientInput.feed = boom\n"
              "from tui.__main__ import main\n"
              "sys.exit(main(['--demo']))\n")
    t = Terminal([sys.executable, "-c", script], tmp_path)
    try:
        t.wait_for("Alex Example", 90)
        t.send(b"x")
        assert t.wait_exit(30) == 1
        assert b"input decoder failed on purpose" in bytes(t.output)
    finally:
        t.close()


def test_ctrl_q_still_exits_0(demo: Terminal) -> None:
    """The other side of the crash rule: leaving normally is success."""
    demo.send(b"\x11")
    assert demo.wait_exit(30) == 0


@pytest.mark.parametrize("kiosk", [False, True], ids=["tui", "kiosk"])
def test_selecting_the_pin_and_pressing_ctrl_c_or_ctrl_x_writes_no_osc52(tmp_path: Path, kiosk: bool) -> None:
    """Break-it finding: Shift+Home then Ctrl+C (or Ctrl+X) in the PIN field wrote
    ``ESC ]52;c;<PIN in base64> BEL`` to the terminal, i.e. into the clipboard at the far end of
    an SSH link. Now no OSC 52 is written, and Ctrl+X leaves the PIN in the field (logging on
    with Enter afterwards works and spends no try)."""
    t = Terminal(cardrenew_argv("--demo", *(["--kiosk"] if kiosk else [])), tmp_path)
    try:
        t.wait_for(lambda s: "Alex Example" in s and "Card detected" in s, 90)
        t.send(PIN)
        t.wait_for("••••••", 10)
        for keys in (b"\x1b[1;2H\x03", b"\x1b[1;2H\x18", b"\x01\x03", b"\x01\x18"):
            t.send(keys)
            t.settle(0.4)
            assert t.alive(), f"exited with {t.exit_status}"
        assert b"\x1b]52" not in bytes(t.output)
        assert b"MTIzNDU2" not in bytes(t.output)  # base64 of the PIN
        t.send(b"\r")
        t.wait_for("Due for renewal", 30)
        assert t.pin_retries() == 3
    finally:
        t.close()


def test_a_tab_in_the_same_read_as_the_digits_moves_to_the_next_pin_field(demo: Terminal) -> None:
    """A fast typist, a paste tool or a slow link delivers ``123456<Tab>654321<Tab>654321<Enter>``
    in one read. Was: Textual forwards every key of the read to the field focused when the read
    arrived, before the Tab has moved the focus, so all the digits landed in *Current PIN* and
    the PIN was not changed. Now the PIN is changed, and no try was spent."""
    log_on(demo)
    demo.send(b"p")
    demo.wait_for("Current Passcode", 30)
    demo.settle()
    demo.send(b"123456\t654321\t654321\r")
    demo.wait_for("has been changed", 30)
    state = demo.demo_card_state()
    assert state["pin"] == "654321" and state["pin_retries"] == 3
