"""A crash never shows a PIN (issue 12 item 1): Textual draws a crash's traceback with local
variables, and the field crash (Enter twice at the last try: ``DuplicateIds``) printed
``pin = '654321'``. Here the app is crashed on purpose while a PIN is held — under Pilot, and as
the real program under a pseudo-terminal with ``-vv`` — and everything it wrote to the terminal,
its logs and its state, data and config directories is searched for the PIN (ASCII and hex)."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tui.conftest import wait_for
from tests.tui.test_renewal_flow import log_on
from tui.app import make_app
from tui.screens import CardScreen, LogonScreen, MessageDialog, NextDialog, PinDialog

WRONG_PIN = "654321"  # not the demo card's PIN, which the demo's logon pane shows on purpose
DEMO_PIN = "123456"


def spellings(pin: str) -> list[bytes]:
    raw = pin.encode()
    return [raw, raw.hex().encode(), raw.hex().upper().encode(), raw.hex(" ").encode(), raw.hex(" ").upper().encode(),
            pin.encode("utf-16-le")]


def leaks(blob: bytes, pin: str) -> list[bytes]:
    return [s for s in spellings(pin) if s in blob]


class InjectedCrash(RuntimeError):
    pass


async def test_a_crash_at_logon_with_the_pin_in_hand_shows_no_pin(make_demo, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    def crash(self, pin):  # type: ignore[no-untyped-def]
        raise InjectedCrash("crashed while the PIN is held")

    monkeypatch.setattr(LogonScreen, "logon", crash)
    backend, _card = make_demo()
    app = make_app(backend)
    with pytest.raises(InjectedCrash):
        async with app.run_test() as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
            await pilot.press(*WRONG_PIN, "enter")
            await pilot.pause()
    text = "".join(capsys.readouterr())  # Textual prints the crash to stderr when the app ends
    assert "InjectedCrash" in text and "action_logon" in text  # the traceback was drawn…
    assert leaks(text.encode(), WRONG_PIN) == []  # …without the PIN…
    assert " locals " not in text  # …and without any frame's local variables (rich titles that panel "locals")
    assert app.return_code == 1


async def test_a_crash_after_pin_again_shows_no_pin(make_demo, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def crash(self, pin, summary):  # type: ignore[no-untyped-def]
        raise InjectedCrash("crashed while the PIN is held")

    # The PIN-again answer goes to the last-try guard, then to start_renewal (a worker: its errors
    # are shown as a dialog); crash where the answer first lands, on the UI thread.
    monkeypatch.setattr(CardScreen, "renew_after_guard", crash)
    backend, _card = make_demo()
    app = make_app(backend)
    with pytest.raises(InjectedCrash):
        async with app.run_test(size=(100, 32)) as pilot:
            await log_on(pilot, DEMO_PIN)
            await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
            await pilot.press("u")
            await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
            await pilot.press(*DEMO_PIN, "enter")
            await pilot.pause()
    text = "".join(capsys.readouterr())  # Textual prints the crash to stderr when the app ends
    assert "InjectedCrash" in text and "renew_after_guard" in text
    assert leaks(text.encode(), DEMO_PIN) == []
    assert app.return_code == 1


async def test_an_error_naming_the_pin_argument_shows_no_pin(make_demo, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """An unexpected error on the card thread whose message formats the PIN argument (as a careless
    ``raise X(f"... {pin!r}")`` would): the error dialog shows the message, never the PIN."""
    from card.piv import PivSession
    from tests.tui.conftest import screen_text

    def verify_pin(self, pin):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"unexpected reply while verifying {pin!r} ({pin})")

    monkeypatch.setattr(PivSession, "verify_pin", verify_pin)
    backend, _card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await log_on(pilot, WRONG_PIN)
        await wait_for(pilot, lambda: "unexpected reply" in screen_text(app))
        assert leaks(screen_text(app).encode(), WRONG_PIN) == []
        assert "Secret(****)" in screen_text(app)


CHILD = textwrap.dedent("""
    import sys
    from tui.screens.logon import LogonScreen

    def crash(self, pin):
        raise RuntimeError("injected crash while the PIN is held")

    LogonScreen.logon = crash  # the crash point: the PIN was just taken from the field
    from tui.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _drain(fd: int, proc: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
        elif proc.poll() is not None:
            break
    return buf


@contextlib.contextmanager
def tui_in_pty(argv: list[str], home: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, bytearray]]:
    """The program ``argv`` under a pseudo-terminal with its XDG directories under ``home``, once it
    shows the logon pane: ``(process, pty master, what it wrote so far)``; killed by PID at the end."""
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="80", LINES="24", HOME=str(home),
               XDG_STATE_HOME=str(home / "state"), XDG_DATA_HOME=str(home / "data"),
               XDG_CONFIG_HOME=str(home / "config"), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    env.pop("CARDRENEW_CONFIG", None)
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                            cwd=home.parent)
    os.close(slave)
    try:
        shown = bytearray()
        deadline = time.monotonic() + 60
        while b"Logon" not in shown and time.monotonic() < deadline and proc.poll() is None:
            shown += _drain(master, proc, 0.2)
        assert b"Logon" in shown, bytes(shown[-500:])
        yield proc, master, shown
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


@pytest.mark.parametrize("extra", [[], ["--kiosk"]], ids=["tui", "kiosk"])
def test_the_real_program_crashing_with_the_pin_in_hand_writes_it_nowhere(tmp_path: Path, extra: list[str]) -> None:
    script = tmp_path / "crashing_cardrenew.py"
    script.write_text(CHILD)
    home = tmp_path / "home"
    with tui_in_pty([sys.executable, str(script), "-vv", "--demo", *extra], home) as (proc, master, shown):
        os.write(master, WRONG_PIN.encode() + b"\r")
        shown += _drain(master, proc, 60)
        assert proc.wait(timeout=30) != 0  # a crash exits non-zero
    assert b"injected crash while the PIN is held" in shown  # the traceback reached the terminal
    assert leaks(bytes(shown), WRONG_PIN) == []
    written = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    assert [str(p) for p, blob in written.items() if leaks(blob, WRONG_PIN)] == []


def test_the_running_tui_cannot_dump_core(tmp_path: Path) -> None:
    """Read from outside: the running TUI's core-file limit is 0 (soft and hard)."""
    import signal

    with tui_in_pty([sys.executable, "-m", "tui", "--demo"], tmp_path / "home") as (proc, _master, _shown):
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
        assert core.split()[4:6] == ["0", "0"], core
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


async def test_logon_and_pin_again_hand_over_one_secret_empty_the_field_and_wipe_it(make_demo, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The PIN is taken from the field once (the field is emptied at submit) and wiped after use."""
    from textual.widgets import Input

    from card.piv import PivSession
    from card.secret import Secret

    seen: list[Secret] = []
    real_verify = PivSession.verify_pin

    def verify_pin(self, pin):  # type: ignore[no-untyped-def]
        assert isinstance(pin, Secret)
        seen.append(pin)
        return real_verify(self, pin)

    monkeypatch.setattr(PivSession, "verify_pin", verify_pin)
    backend, _card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await log_on(pilot, DEMO_PIN)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        assert seen and all(s.wiped for s in seen)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        dialog = app.screen
        field = dialog.query_one("#pin-again-input", Input)
        await pilot.press(*DEMO_PIN, "enter")
        assert field.value == ""  # emptied at submit
        while True:  # Next after each certificate, up to the confirmation
            await wait_for(pilot, lambda: isinstance(app.screen, (NextDialog, MessageDialog)), timeout_s=60)
            if isinstance(app.screen, MessageDialog):
                break
            next_dialog = app.screen
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is not next_dialog)
        assert app.screen.id == "confirmation-dialog" and len(seen) >= 2
        assert all(s.wiped for s in seen)
