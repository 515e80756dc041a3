"""Issue 12 item 3: SIGTERM, SIGHUP and SIGINT end the real program within seconds, with
128 + signal and the terminal restored, also while the card thread waits for the holder (*Next*
between two certificates) or runs a card step. Before (bbbe978): a signal inside a card step
made ``on_unmount → service.shutdown`` wait for the card thread, which then waited in
``between_slots → call_from_thread`` for the UI that had stopped — a blank screen and a live
process for good (the in-process test below hung there; so did the pcscd sweep at *generating*).

The full sweep over every renewal step, through pcscd, is tests/integration/test_signal_sweep.py.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.tui.pty_tui import SIGNALS, PtyTui, terminal_restored

DEMO_PIN = "123456"


def to_next_dialog(tui: PtyTui) -> None:
    """Log on to the demo card, Update My Card, PIN again, until "Certificate 1 of 2 renewed"."""
    tui.wait_text("Logon", 60)
    tui.wait_text("Alex Example", 60)
    tui.send(DEMO_PIN + "\r")
    tui.wait_text("Update My Card", 60)
    mark = len(tui.output)
    tui.wait_text("Due for renewal", 60)
    time.sleep(0.5)  # the Card tab's own read finishes
    tui.send("u")
    tui.wait_text("Updates are available", 60, start=mark)
    tui.send("\r")
    tui.wait_text("(PIN) again", 60, start=mark)
    time.sleep(0.3)
    tui.send(DEMO_PIN + "\r")
    tui.wait_text("Certificate 1 of 2 renewed", 120, start=mark)


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_while_next_waits_ends_the_program(tmp_path, signum: int) -> None:  # type: ignore[no-untyped-def]
    env = {name: str(tmp_path / name) for name in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME")}
    with PtyTui(["--demo"], env=env, cwd=tmp_path) as tui:
        to_next_dialog(tui)
        before = len(tui.output)
        sent = tui.signal(signum)
        code = tui.wait_exit(20)  # bounded: before the fix the process never ended
        took = time.monotonic() - sent
        assert code == 128 + signum, (code, tui.text(before)[-800:])
        assert took < 5, took
        assert terminal_restored(bytes(tui.output[before:]))


def test_a_signal_inside_a_card_step_never_leaves_the_card_thread_waiting_on_the_ui(make_demo) -> None:  # type: ignore[no-untyped-def]
    """In process: the signal arrives while GENERATE runs (slowed to 1.5 s). The app must close
    without waiting for the card thread, and the card thread must finish the certificate under way,
    journal it and stop before the next one — not wait for a *Next* the closed UI can never show.
    The Pilot session runs on its own thread so that a hang fails this test instead of stopping it."""
    import asyncio
    import threading

    from tests.tui.conftest import wait_for
    from tests.tui.test_renewal_flow import PIN, log_on
    from tui.app import make_app
    from tui.screens import CardScreen, MessageDialog, PinDialog

    backend, card = make_demo()
    card.faults.delays_s = {0x47: 1.5}
    app = make_app(backend)
    closed = threading.Event()
    problems: list[BaseException] = []

    async def session() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await log_on(pilot)
            await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
            await pilot.press("u")
            await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
            await pilot.press(*PIN, "enter")
            await wait_for(pilot, lambda: "Generating" in " ".join(
                str(w.render()) for w in app.screen.query("#step-text")), timeout_s=60)
            app.exit_on_signal(signal.SIGTERM)  # what run_app's handler does
            await pilot.pause(0.1)

    def run() -> None:
        try:
            asyncio.run(session())
        except BaseException as exc:  # noqa: BLE001 - reported below
            problems.append(exc)
        finally:
            closed.set()

    threading.Thread(target=run, name="pilot", daemon=True).start()
    assert closed.wait(60), "the app never closed: it waited for the card thread"
    assert not problems, problems
    assert app.exit_signal == signal.SIGTERM
    assert backend.service.shutdown(timeout_s=30), "the card thread never finished its step"
    journal = backend.journals.load(app.summary.card_id) if app.summary is not None else None
    state = {slot: sj.step for slot, sj in journal.slots.items()} if journal is not None else {}
    assert state.get("9A") == "done" and state.get("9C") in ("planned", "authorised"), state
