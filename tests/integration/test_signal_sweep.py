"""Signal sweep (issue 12, item 3): the real TUI on a card served through pcscd + vpcd (key
generation delayed 2 s), driven under a pseudo-terminal, is sent SIGTERM, SIGHUP and SIGINT at
every step of a renewal — the logon pane, the *PIN again* dialog, generating, writing, the *Next*
dialog, an error dialog, the confirmation. Each time the program must end within 5 s with
128 + signal, leave the alternate screen and show the cursor (the bytes it wrote), and release the
reader: ``cardrenew renew --pin-stdin --yes`` afterwards finishes the card (or finds it renewed),
and OpenSC reads a renewed certificate from both slots whose key signs (pkcs15-tool, pkcs11-tool).

Before the fix (bbbe978), SIGTERM/SIGHUP while the first certificate was generated or written
left a blank screen and a live process holding the reader (the *generating* cases here hung).
Slow (21 runs of the real program): marked ``sweep``; needs pcscd (run inside isolated.sh).
"""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from card.piv import Slot
from tests.integration.conftest import READER, run_cardrenew
from tests.integration.test_sweeps import opensc_slot
from tests.tui.pty_tui import SIGNALS, PtyTui, terminal_restored

pytestmark = [pytest.mark.sweep, pytest.mark.pcscd]

PIN = "123456"
WRONG_PIN = "654321"
EXIT_WITHIN_S = 5.0
GENERATE_DELAY = "47=2"
DELAYS = {"writing": ["--delay", "DB=0.7"]}
"""Extra card delays for a step too short to be seen otherwise: PUT DATA, 0.7 s per command of the
chain (a certificate takes about three)."""


def _logon(tui: PtyTui) -> None:
    tui.wait_text("Alex Example", 60)
    time.sleep(0.3)
    tui.send(PIN + "\r")
    tui.wait_text("Due for renewal", 60)
    time.sleep(0.8)  # the Card tab's own read of the card finishes


def _pin_again(tui: PtyTui) -> int:
    _logon(tui)
    mark = len(tui.output)
    tui.send("u")
    tui.wait_text("Updates are available", 60, start=mark)
    tui.send("\r")
    tui.wait_text("(PIN) again", 60, start=mark)
    time.sleep(0.3)
    return mark


def _renewing(tui: PtyTui) -> int:
    mark = _pin_again(tui)
    tui.send(PIN + "\r")
    return mark


def at_logon(tui: PtyTui) -> None:
    tui.wait_text("Alex Example", 60)


def at_pin_again(tui: PtyTui) -> None:
    _pin_again(tui)


def at_generating(tui: PtyTui) -> None:
    mark = _renewing(tui)
    tui.wait_text("(9A): Generating", 60, start=mark)


def at_writing(tui: PtyTui) -> None:
    mark = _renewing(tui)
    tui.wait_text("(9A): Writing", 60, start=mark)


def at_next(tui: PtyTui) -> None:
    mark = _renewing(tui)
    tui.wait_text("Certificate 1 of 2 renewed", 60, start=mark)


def at_error(tui: PtyTui) -> None:
    mark = _pin_again(tui)
    tui.send(WRONG_PIN + "\r")  # PIN again wrong: an error dialog (nothing changed on the card)
    tui.wait_text("Wrong PIN", 60, start=mark)


def at_completed(tui: PtyTui) -> None:
    mark = _renewing(tui)
    tui.wait_text("Certificate 1 of 2 renewed", 60, start=mark)
    tui.send("\r")
    tui.wait_text("Certificate 2 of 2 renewed", 60, start=mark)
    time.sleep(0.3)
    tui.send("\r")
    tui.wait_text("Your card has been updated", 60, start=mark)


STEPS: dict[str, Callable[[PtyTui], None]] = {
    "logon": at_logon, "pin-again": at_pin_again, "generating": at_generating, "writing": at_writing,
    "next": at_next, "error": at_error, "completed": at_completed,
}


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_at_every_step(serve_card, workdir: Path, step: str, signum: int) -> None:  # type: ignore[no-untyped-def]
    serve_card(key_type="ECCP256", extra=["--delay", GENERATE_DELAY, *DELAYS.get(step, [])])
    env = {"CARDRENEW_CONFIG": str(workdir / "config.toml")}  # XDG dirs: the test's own (tests/conftest.py)
    with PtyTui(["--reader", READER], env=env, cwd=workdir) as tui:
        STEPS[step](tui)
        before = len(tui.output)
        sent = tui.signal(signum)
        code = tui.wait_exit(30)  # bounded: a hang is a failure, not a stuck test
        took = time.monotonic() - sent
        after = bytes(tui.output[before:])
        assert code == 128 + signum, (step, code, tui.text(before)[-1200:])
        assert took < EXIT_WITHIN_S, (step, took)
        assert terminal_restored(after), (step, after[-300:])
    # The reader is free and the journal consistent: the headless run finishes the card.
    renew = run_cardrenew(workdir, "renew", "--pin-stdin", "--yes", "--json", stdin=PIN + "\n")
    assert renew.returncode in (0, 10), (step, renew.returncode, renew.stdout, renew.stderr)
    if step in ("logon", "pin-again", "error"):
        assert renew.returncode == 0, (step, renew.stdout)  # nothing was renewed before the signal
    ca = x509.load_pem_x509_certificate((workdir / "ca" / "ca.pem").read_bytes())
    for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
        cert = opensc_slot(workdir, slot, "ECDSA-SHA256", ca)
        days = (cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)).days
        assert days > 90, (step, slot, days)  # a renewed certificate, not the one due in 30 days
