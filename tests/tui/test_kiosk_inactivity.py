"""Pilot tests: the inactivity timeout logs off; kiosk mode has no quit key and no command palette."""

from __future__ import annotations

import dataclasses
import time

from textual.widgets import Input

from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_renewal_flow import PIN, log_on
from tui.app import make_app
from tui.screens import CardScreen, LoggedOffScreen, LogonScreen, MessageDialog, PinDialog


def configure(backend, **changes) -> None:  # type: ignore[no-untyped-def]
    backend.settings = dataclasses.replace(backend.settings, **changes)


async def to_card(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await log_on(pilot)
    await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)


IDLE_S = 4
"""The timeout these tests configure. Idle time is simulated by moving ``app.last_activity`` back,
never by waiting it out: a busy machine (logon taking longer than the timeout) must not decide them."""


async def test_inactivity_logs_off(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    configure(backend, inactivity_timeout_s=IDLE_S)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        # A key press just before the timeout keeps the session: the idle clock starts again.
        app.last_activity -= IDLE_S - 0.5
        await pilot.press("right")
        assert time.monotonic() - app.last_activity < 1
        await pilot.pause(1.2)  # at least one check of the inactivity timer
        assert isinstance(app.screen, CardScreen) and app.is_logged_on
        # Without input for longer than the timeout: logged off.
        app.last_activity -= IDLE_S + 1
        await wait_for(pilot, lambda: isinstance(app.screen, LoggedOffScreen), timeout_s=10)
        assert "logged off after a period without activity" in screen_text(app)
        assert not app.is_logged_on and not card.pin_verified


async def test_inactivity_clears_a_half_typed_pin_on_the_logon_pane(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    configure(backend, inactivity_timeout_s=IDLE_S)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
        app.screen.query_one("#pin-input", Input).focus()
        await pilot.press(*"123")
        pin_input = app.screen.query_one("#pin-input", Input)
        assert pin_input.value == "123"
        app.last_activity -= IDLE_S + 1
        await wait_for(pilot, lambda: pin_input.value == "", timeout_s=10)


async def test_no_log_off_while_certificates_are_written(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    configure(backend, inactivity_timeout_s=IDLE_S)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: app.renewing)
        app.last_activity -= 10 * IDLE_S  # long idle while the Next dialog waits, untouched
        started = time.monotonic()
        while time.monotonic() - started < 2.0 and app.renewing:
            await pilot.pause(0.1)
            assert app.is_logged_on
        assert not isinstance(app.screen, LoggedOffScreen)


async def test_zero_turns_the_timeout_off(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    configure(backend, inactivity_timeout_s=0)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        app.last_activity -= 10_000
        await pilot.pause(1.2)
        assert isinstance(app.screen, CardScreen) and app.is_logged_on


async def test_kiosk_has_no_quit_key_and_no_palette_and_returns_to_logon(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    configure(backend, kiosk=True)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        shown = {b.binding.action for b in app.screen.active_bindings.values() if b.binding.show and b.enabled}
        assert "app.quit" not in shown and "quit" not in shown
        exits: list[object] = []
        app.exit = lambda *a, **k: exits.append((a, k))  # type: ignore[method-assign]
        await pilot.press("ctrl+q")
        await pilot.press("ctrl+c")
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert not exits and isinstance(app.screen, CardScreen)  # no quit, no palette
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
        assert "You are logged off. Remove your card" in screen_text(app)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not exits
        del app.exit


async def test_kiosk_idle_log_off_returns_to_logon(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    configure(backend, kiosk=True, inactivity_timeout_s=IDLE_S)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        app.last_activity -= IDLE_S + 1
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen), timeout_s=10)
        assert "logged off after a period without activity" in screen_text(app)
        assert not app.is_logged_on


async def test_without_kiosk_ctrl_q_quits(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
        exits: list[object] = []
        app.exit = lambda *a, **k: exits.append((a, k))  # type: ignore[method-assign]
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert exits  # the quit key works outside kiosk mode
