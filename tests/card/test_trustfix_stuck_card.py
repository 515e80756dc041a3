"""Break-it finding 14 (breakit2): `renew` on a card that stops answering waited without bound after
SIGTERM (the signal at 20 s inside a GENERATE answered after 150 s: exit 132 s later), where the TUI
gives up after its 60 s bound. Now renew waits for the card step under way at most
``RENEW_STEP_WAIT_S`` after the signal, then ends with 128 + signal (``CANCELLED``), the journal —
saved before the step — resuming it at the next run, which finishes the card.

The real ``cardrenew`` code runs in process (``tui.cli.main``) on the in-process card, whose GENERATE
is slowed; the bound is shortened for the test, and the SIGTERM is a real signal to this process."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from card.config import Settings
from card.emulator.card import SoftPivCard
from card.emulator.create import create_card_state
from card.emulator.faults import CardFaults
from card.enrollment.local import LocalCA
from card.piv import KeyType, Slot
from tests.card.test_breakit_engine import cli
from tests.card.test_never_worse import certificate_on, slot_works

GENERATE_DELAY_S = 8.0


def test_sigterm_during_a_card_step_that_never_ends_exits_within_the_bound(
        ca: LocalCA, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    card = SoftPivCard(create_card_state(ca, expires_in_days=30, key_type=KeyType.ECCP256),
                       faults=CardFaults(delays_s={0x47: GENERATE_DELAY_S}))
    old = {slot: certificate_on(card, slot) for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE)}
    monkeypatch.setattr("tui.cli.renew.RENEW_STEP_WAIT_S", 1.0, raising=False)
    done = threading.Event()

    state = Settings().state_dir

    def generating() -> bool:  # the journal is saved as "generating" right before GENERATE is sent
        return any('"generating"' in p.read_text(errors="replace") for p in state.glob("journal-*.json"))

    def kill_during_generate() -> None:
        while not done.is_set() and not generating():
            time.sleep(0.02)
        if not done.is_set():
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=kill_during_generate, daemon=True).start()
    start = time.monotonic()
    try:
        code, out, err = cli(monkeypatch, capsys, card, ca, "renew", "--pin-stdin", "--yes")
    finally:
        done.set()
    took = time.monotonic() - start
    assert took < GENERATE_DELAY_S - 2, f"renew waited {took:.1f} s for the stuck card step"  # detects the old wait
    assert code == 128 + signal.SIGTERM and out["error"]["code"] == "CANCELLED", (out, err)
    assert "did not answer" in out["error"]["message"] and "cardrenew renew" in out["error"]["next_step"]

    time.sleep(GENERATE_DELAY_S)  # the card answers at last; the abandoned step ends on its own thread
    card.faults = CardFaults()
    code, out, err = cli(monkeypatch, capsys, card, ca, "renew", "--pin-stdin", "--yes")
    assert code == 0, (out, err)  # the next run finishes the card
    for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
        assert certificate_on(card, slot) != old[slot] and slot_works(card, slot)
