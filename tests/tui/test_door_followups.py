"""Three rough edges found while moving the panes behind the card service's door (issue 13):
Left/Right in two-button dialogs, the demo PIN hint after a PIN change, and the demo's
completed-with-errors pane when the card comes back."""

from __future__ import annotations

from card.demo import DEMO_PIN
from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_dialog_safety import to_card
from tui.app import make_app
from tui.screens import (CardScreen, CompletedWithErrorsScreen, ErrorDialog, LoggedOffScreen, LogonScreen,
                         MessageDialog, NextDialog, PinDialog)


async def test_left_and_right_move_between_the_buttons_of_a_two_button_dialog(make_demo) -> None:  # type: ignore[no-untyped-def]
    """*Updates are available* (OK, Cancel): Right moves to Cancel, Left back to OK; Enter then
    presses the button that has the focus. Before, the arrows did nothing."""
    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        assert app.focused is not None and app.focused.id == "ok-button"
        await pilot.press("right")
        assert app.focused.id == "cancel-button"
        await pilot.press("right")  # the last button: the focus stays
        assert app.focused.id == "cancel-button"
        await pilot.press("left")
        assert app.focused.id == "ok-button"
        await pilot.press("right", "enter")  # Cancel: back to the Card tab, nothing asked
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))


async def test_arrows_in_the_pin_again_field_stay_in_the_field(make_demo) -> None:  # type: ignore[no-untyped-def]
    """In *PIN again* the arrows move the cursor in the PIN field, never the focus."""
    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        await pilot.press("1", "2", "left", "right")
        assert app.focused is not None and app.focused.id == "pin-again-input"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))


async def test_the_demo_pin_hint_after_the_pin_was_changed(make_demo) -> None:  # type: ignore[no-untyped-def]
    """After *Change passcode* the logon pane no longer says the demo card's PIN is 123456 (it is
    not: the next logon with it would spend a try). It never shows the new PIN either."""
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
        assert f"Demo card: the PIN is {DEMO_PIN}" in screen_text(app)
        await to_card(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: getattr(app.screen, "id", None) == "change-pin-dialog")
        await pilot.press(*DEMO_PIN, "enter", *"24681357", "enter", *"24681357", "enter")
        await wait_for(pilot, lambda: getattr(app.screen, "id", None) == "pin-changed-dialog")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LoggedOffScreen))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
        text = screen_text(app)
        assert DEMO_PIN not in text and "24681357" not in text
        assert "Demo card: the PIN was changed" in text
    assert card.state.pin == "24681357"


async def test_the_demo_keeps_completed_with_errors_when_the_card_comes_back(make_demo) -> None:  # type: ignore[no-untyped-def]
    """``--demo-fault pull-card`` puts the card back by itself: the outcome (what was renewed, the
    reference) stays until the holder leaves it; before, the logon pane replaced it at once."""
    backend, card = make_demo(fault="pull-card")
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        await pilot.press(*DEMO_PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NextDialog), timeout_s=60)
        await pilot.press("enter")  # the card is pulled while certificate 2 is written
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), timeout_s=60)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CompletedWithErrorsScreen))
        await wait_for(pilot, lambda: app.card_present is False)
        reference = app.screen.result.reference
        card.insert()  # as the demo does 15 s later
        await wait_for(pilot, lambda: app.card_present is True)
        await pilot.pause(0.3)
        assert isinstance(app.screen, CompletedWithErrorsScreen)
        assert f"Reference: {reference}" in screen_text(app)
        await pilot.press("enter")  # Back to Card tab: logged off by the pull, so the logon pane
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
