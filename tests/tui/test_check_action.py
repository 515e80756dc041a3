"""The Card tab's *Check* (issue 15), driven with Pilot on the demo card: the dry run with the PIN,
without it, the last-try question first, a wrong PIN; the report's words are the CLI's, and nothing
on the card changes (no GENERATE, PUT DATA, CHANGE REFERENCE DATA or RESET RETRY COUNTER)."""

from __future__ import annotations

from textual.widgets import Button

from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_card_tab import to_card
from tests.tui.test_renewal_flow import PIN, key_digest
from tui.app import make_app
from tui.screens import CardScreen, MessageDialog
from tui.screens.check import CheckPinDialog, CheckReportDialog

DESTRUCTIVE = (0x47, 0xDB, 0x24, 0x2C)


def destructive_sent(card) -> list[int]:  # type: ignore[no-untyped-def]
    return [apdu[1] for apdu, _ in card.trace if apdu[1] in DESTRUCTIVE]


async def open_check(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await to_card(pilot)
    await pilot.press("c")
    await wait_for(pilot, lambda: isinstance(app.screen, CheckPinDialog))


async def report_of(pilot) -> str:  # type: ignore[no-untyped-def]
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, CheckReportDialog))
    return screen_text(app)


async def test_check_with_the_pin_shows_every_check_passed_and_changes_nothing(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    keys = key_digest(card)
    app = make_app(backend)
    async with app.run_test(size=(110, 40)) as pilot:
        await to_card(pilot)
        assert app.screen.query_one("#check-button", Button).label.plain == "Check"
        await pilot.click("#check-button")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckPinDialog))
        await pilot.press(*PIN, "enter")
        text = await report_of(pilot)
        assert "Every check passed" in text and "nothing on the card was changed" in text
        for line in ("passed   Certificate authority: The embedded CA answered",
                     "passed   Management key: Authenticated", "passed   PIN: Accepted.",
                     "passed   Renewal grant (9A): The embedded CA would grant it now",
                     "passed   State directory:"):
            assert line in text, text
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
    assert destructive_sent(card) == [] and key_digest(card) == keys


async def test_check_without_the_pin_names_what_was_skipped(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(110, 40)) as pilot:
        await open_check(pilot)
        await pilot.click("#without-button")
        text = await report_of(pilot)
        assert "No check failed" in text
        assert "skipped  PIN: No PIN was given, so it was not sent; skipped because of it: Renewal grant (9A)" in text
    assert destructive_sent(card) == []


async def test_check_with_one_try_left_asks_first_and_cancel_sends_nothing(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(110, 40)) as pilot:
        await to_card(pilot)
        card.state.pin_retries, card.pin_verified = 1, False  # reset by another program that spent two tries
        verifies = sum(1 for apdu, _ in card.trace if apdu[1] == 0x20 and len(apdu) > 5)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckPinDialog))
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and app.screen.id == "last-try-dialog")
        await pilot.press("enter")  # Cancel is focused
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        assert not isinstance(app.screen, CheckReportDialog)
        assert sum(1 for apdu, _ in card.trace if apdu[1] == 0x20 and len(apdu) > 5) == verifies
        assert card.state.pin_retries == 1


async def test_check_with_a_wrong_pin_reports_it_and_the_tries_left(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(110, 40)) as pilot:
        await open_check(pilot)
        await pilot.press(*"000000", "enter")
        text = await report_of(pilot)
        assert "Some checks failed" in text and "FAILED   PIN: The PIN was not accepted. 2 tries left." in text
        assert "skipped  Renewal grant (9A): Not checked: the PIN was not verified" in text
        assert app.summary is not None and app.summary.pin_retries == 2
    assert destructive_sent(card) == []


async def test_escape_checks_nothing(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(110, 40)) as pilot:
        await open_check(pilot)
        before = len(card.trace)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        assert len(card.trace) == before
