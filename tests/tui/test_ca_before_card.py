"""Tester F-6 (break-it 1, still broken in the TUI): with a CA that does not answer, the TUI held the
card's transaction for ~75 s (another program got BUSY), said "Checking the card…" and offered no
way out. Now the TUI reaches the CA before it takes the card, says so, and Escape stops the wait:
nothing was asked of the card, nothing changed."""

from __future__ import annotations

import threading

from card.enrollment.base import IssuerUnavailable
from card.errors import OperationCancelled
from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_renewal_flow import PIN, log_on
from tui.app import make_app
from tui.screens import CardScreen, ErrorDialog, MessageDialog, PinDialog


async def start_update(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await log_on(pilot)
    await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
    await pilot.press("u")
    await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
    await pilot.press(*PIN, "enter")


async def test_escape_stops_the_wait_for_a_silent_ca_and_the_card_is_never_asked(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    waiting = threading.Event()
    renewals: list[object] = []

    def silent_ca(cancel: threading.Event) -> None:
        waiting.set()
        if cancel.wait(60):  # a hang detector: Escape sets it at once
            raise OperationCancelled("stopped while waiting for the certificate authority")
        raise AssertionError("the wait was not cancelled")

    backend.reach_ca = silent_ca
    real_renew = backend.renew
    backend.renew = lambda request: renewals.append(request) or real_renew(request)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await start_update(pilot)
        await wait_for(pilot, lambda: waiting.is_set() and "Contacting the certificate authority" in screen_text(app))
        assert "Escape" in screen_text(app)  # the way out is shown
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        assert "nothing was changed on your card" in screen_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
    assert renewals == []  # the card's transaction was never taken
    assert card.state.pin_retries == 3


async def test_an_unreachable_ca_is_reported_without_taking_the_card(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _card = make_demo()
    renewals: list[object] = []

    def down(cancel: threading.Event) -> None:
        raise IssuerUnavailable("the certificate authority did not answer within 15 s")

    backend.reach_ca = down
    backend.renew = lambda request: renewals.append(request)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await start_update(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        assert "cannot be reached" in screen_text(app) and "did not answer" in screen_text(app)
    assert renewals == []
