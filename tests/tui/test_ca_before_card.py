"""Tester F-6 (break-it 1, still broken in the TUI): with a CA that does not answer, the TUI held the
card's transaction for ~75 s (another program got BUSY), said "Checking the card…" and offered no
way out. Now the TUI reaches the CA before it takes the card, says so, and Escape stops the wait:
nothing was asked of the card, nothing changed."""

from __future__ import annotations

import threading
from pathlib import Path

from card.backend import build_issuer
from card.config import load_settings
from card.enrollment.base import IssuerUnavailable
from card.errors import OperationCancelled
from tests.card.test_check_ca_unreachable import SilentCA, config
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


async def test_escape_ends_the_http_request_in_flight_and_the_next_update_asks_again(  # type: ignore[no-untyped-def]
        make_demo, tmp_path: Path) -> None:
    """Tester F-6, the rest: Escape stopped the back-off between attempts but the HTTP request in
    flight ran to the issuer's ``timeout_s`` (15 s by default). Now Escape ends it at once; the
    program's cancellation token is left as it was, so the next Update My Card asks the CA again."""
    backend, card = make_demo()
    server = SilentCA()
    try:
        path = Path(config(tmp_path, server.port))
        path.write_text(path.read_text().replace("timeout_s = 1", "timeout_s = 120"))
        backend.issuer = build_issuer(load_settings(path), cancel=backend.cancel_event)
        app = make_app(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            for attempt in (1, 2):
                if attempt == 1:
                    await start_update(pilot)
                else:
                    await pilot.press("u")
                    await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
                    await pilot.press("enter")
                    await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
                    await pilot.press(*PIN, "enter")
                await wait_for(pilot, lambda: server.accepted >= attempt)  # the request is in flight
                await pilot.press("escape")
                await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), timeout_s=20)  # not 120 s
                assert "you stopped the wait" in screen_text(app)
                await pilot.press("enter")
                await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
            assert not backend.cancel_event.is_set()
    finally:
        server.close()
    assert card.state.pin_retries == 3
