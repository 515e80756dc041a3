"""Tester F-12: an engine error that is not a CardError (a fault of ours) left *Write Certificates*
a dead end — "Checking the card…" for good, no key in the footer, a kiosk stuck until a signal.
Now its dialog leads back to the Card tab, which says the update stopped and what to do, and never
claims that nothing was changed."""

from __future__ import annotations

from concurrent.futures import Future

from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_ca_before_card import start_update
from tui.app import make_app
from tui.screens import CardScreen, ErrorDialog


async def test_an_unexpected_engine_error_leads_back_to_the_card_tab(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _card = make_demo()

    def broken_renew(request):  # type: ignore[no-untyped-def]
        request.pin.wipe()
        failed: Future[object] = Future()
        failed.set_exception(ValueError("1 is not a valid Slot"))
        return failed

    backend.renew = broken_renew
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await start_update(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        assert "Nothing was changed" not in screen_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        await wait_for(pilot, lambda: "stopped with an unexpected error" in screen_text(app))
        assert not app.renewing
