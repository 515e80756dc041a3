"""``cardrenew change-pin`` and ``unblock`` (issue 15) as people use them: the real program under a
pseudo-terminal on a card served through pcscd — the prompts, no echo of any secret, the last-try
question (no sends nothing, yes sends) — and with ``-vv --pin-stdin``: no secret in the APDU trace,
the output or the audit log, even when the card work fails unexpectedly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import CARDRENEW, READER, ServedCard
from tests.leaks import leaks
from tests.tui.pty_tui import PtyTui

pytestmark = pytest.mark.pcscd
PIN, NEW_PIN, PUK, WRONG = "123456", "97979797", "12345678", "918273"


def env_for(workdir: Path) -> dict[str, str]:
    return {"CARDRENEW_CONFIG": str(workdir / "config.toml"), "XDG_STATE_HOME": str(workdir / "xdg-state")}


def card_state(card: ServedCard) -> dict:  # type: ignore[type-arg]
    return json.loads(card.state.read_text())


def with_state(card: ServedCard, **changes: object) -> ServedCard:
    """The card stopped, its state changed, and served again."""
    card.stop()
    state = card_state(card)
    state.update(changes)
    card.state.write_text(json.dumps(state))
    return ServedCard(card.state)


def prompt_and_answer(tui: PtyTui, *exchanges: tuple[str, str]) -> None:
    for prompt, answer in exchanges:
        start = len(tui.output)
        tui.wait_text(prompt, timeout_s=60, start=max(0, start - 200))
        tui.send(answer + "\n")


def test_change_pin_on_a_terminal_echoes_no_secret(serve_card, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    card = serve_card(key_type="ECCP256")
    with PtyTui(["change-pin", "--reader", READER], env=env_for(workdir), cwd=workdir) as tui:
        prompt_and_answer(tui, ("Current PIN:", PIN), ("New PIN (6 to 8 characters):", NEW_PIN),
                          ("New PIN again:", NEW_PIN))
        assert tui.wait_exit(60) == 0, tui.text()
        tui.read(0.2)
        text = tui.text()
    assert "Your passcode (PIN) has been changed. Use the new PIN from now on." in text
    assert leaks(bytes(tui.output), PIN.encode()) == [] and leaks(bytes(tui.output), NEW_PIN.encode()) == []
    assert card_state(card)["pin"] == NEW_PIN


def test_last_try_on_a_terminal_no_sends_nothing_yes_sends(serve_card, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    card = with_state(serve_card(key_type="ECCP256"), pin_retries=1)
    try:
        with PtyTui(["change-pin", "--reader", READER], env=env_for(workdir), cwd=workdir) as tui:
            prompt_and_answer(tui, ("Only 1 PIN try is left: a wrong PIN would block the card. Send it? [y/N]", "n"))
            assert tui.wait_exit(60) == 4, tui.text()
            tui.read(0.2)
            assert "only 1 PIN try is left" in tui.text() and "Current PIN" not in tui.text()
        assert card_state(card)["pin_retries"] == 1
        with PtyTui(["change-pin", "--reader", READER], env=env_for(workdir), cwd=workdir) as tui:
            prompt_and_answer(tui, ("Send it? [y/N]", "y"), ("Current PIN:", PIN),
                              ("New PIN (6 to 8 characters):", NEW_PIN), ("New PIN again:", NEW_PIN))
            assert tui.wait_exit(60) == 0, tui.text()
        assert card_state(card)["pin"] == NEW_PIN and card_state(card)["pin_retries"] == 3
    finally:
        card.stop()


def test_unblock_on_a_terminal(serve_card, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    (workdir / "config.toml").write_text((workdir / "config.toml").read_text() + "\n[ui]\nallow_unlock = true\n")
    card = with_state(serve_card(key_type="ECCP256"), pin_retries=0)
    try:
        with PtyTui(["unblock", "--reader", READER], env=env_for(workdir), cwd=workdir) as tui:
            prompt_and_answer(tui, ("PUK:", PUK), ("New PIN (6 to 8 characters):", NEW_PIN),
                              ("New PIN again:", NEW_PIN))
            assert tui.wait_exit(60) == 0, tui.text()
            tui.read(0.2)
            assert "Your card is unlocked" in tui.text()
        assert leaks(bytes(tui.output), PUK.encode()) == []
        assert card_state(card)["pin"] == NEW_PIN and card_state(card)["pin_retries"] == 3
    finally:
        card.stop()


CRASH = """
import sys
from card.piv import session

def boom(self, old, new):
    raise RuntimeError(f"unexpected failure with {old!r} and {new!r}: {vars()!r}")

session.PivSession.change_pin = boom
from tui.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("crash", [False, True])
def test_no_secret_in_the_trace_output_or_audit_log(serve_card, workdir: Path, crash: bool) -> None:  # type: ignore[no-untyped-def]
    serve_card(key_type="ECCP256")
    program = [sys.executable, "-c", CRASH] if crash else CARDRENEW
    wrong = subprocess.run(program + ["-vv", "change-pin", "--reader", READER, "--pin-stdin"],
                           input=f"{WRONG}\n{NEW_PIN}\n{NEW_PIN}\n", capture_output=True, text=True,
                           env=dict(os.environ, **env_for(workdir)), cwd=workdir, timeout=120)
    out = subprocess.run(program + ["-vv", "change-pin", "--reader", READER, "--pin-stdin", "--json"],
                         input=f"{PIN}\n{NEW_PIN}\n{NEW_PIN}\n", capture_output=True, text=True,
                         env=dict(os.environ, **env_for(workdir)), cwd=workdir, timeout=120)
    assert (wrong.returncode, out.returncode) == ((1, 1) if crash else (4, 0)), out.stderr[-2000:]
    assert "TRAFFIC" in out.stderr  # the trace was on
    if not crash:
        assert "2 tries left" in wrong.stderr and json.loads(out.stdout)["outcome"] == "changed"
        assert "00 24 00 80" in out.stderr  # CHANGE REFERENCE DATA was sent, its data redacted
    audit = (workdir / "xdg-state" / "cardrenew" / "audit.log").read_text()
    outcomes = [json.loads(line)["outcome"] for line in audit.splitlines()]
    assert outcomes == (["failed", "failed"] if crash else ["wrong_pin", "changed"])
    for secret in (PIN, NEW_PIN, WRONG):
        for blob in (wrong.stdout + wrong.stderr, out.stdout + out.stderr, audit):
            assert leaks(blob, secret.encode()) == [], (secret, blob[-2000:])
