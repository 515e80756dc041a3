"""Issue 12, items 1–3: every dialog answers once and opens once; every PIN entry is sent once and
only after the last-try guard; a blocked card is shown as blocked everywhere.

A "double Enter" is two key events queued before the app handles the first (what a terminal
delivers when Enter is pressed twice quickly, or a key repeats); a "double click" is two
``Button.Pressed`` messages; a "duplicate message" is the same message posted twice. After each,
the app must still run, hold each dialog at most once, keep the pane under the dialogs, and the
card must have seen each PIN at most once.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from textual import events
from textual.widgets import Button, Input

from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_renewal_flow import PIN, log_on
from tui.app import make_app
from tui.messages import CardInserted, CardRemoved, RenewalFinished
from tui.screens import (CardScreen, ErrorDialog, LoggedOffScreen, LogonScreen, MessageDialog, NextDialog,
                         PinDialog, WriteCertificatesScreen)
from tui.screens.base import Pane
from tui.screens.dialogs import NewPinDialog, TextDialog

WRONG = "654321"


# -- helpers ---------------------------------------------------------------------------------
def double(app, key: str = "enter") -> None:  # type: ignore[no-untyped-def]
    """Queue ``key`` twice before the app handles the first."""
    character = {"enter": "\r", "escape": "\x1b"}.get(key, key if len(key) == 1 else None)
    for _ in range(2):
        app.post_message(events.Key(key, character))


def double_click(button: Button) -> None:
    button.press()
    button.press()


def assert_sane(app) -> None:  # type: ignore[no-untyped-def]
    """The app runs, no dialog is open twice, and a pane lies under the dialogs."""
    assert app.is_running and app.return_code is None, app._exit_renderables
    ids = Counter(s.id for s in app.screen_stack if isinstance(s, TextDialog))
    assert all(n == 1 for n in ids.values()), ids
    assert len(app.screen_stack) >= 2 and isinstance(app.screen_stack[1], Pane), app.screen_stack
    assert all(not isinstance(s, Pane) for s in app.screen_stack[2:]), app.screen_stack


def dialogs(app, dialog_id: str) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for s in app.screen_stack if s.id == dialog_id)


def settle(pilot, seconds: float = 0.4):  # type: ignore[no-untyped-def]
    return pilot.pause(seconds)


async def to_card(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await log_on(pilot)
    await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)


async def type_pin(pilot, pin: str) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
    app.screen.query_one("#pin-input", Input).focus()
    await pilot.press(*pin)


def allow_unlock(backend) -> None:  # type: ignore[no-untyped-def]
    backend.settings = dataclasses.replace(backend.settings, allow_unlock=True)


# -- item 1: the crash of the report, and every PIN submit once --------------------------------
@pytest.mark.parametrize("kiosk", [False, True], ids=["tui", "kiosk"])
async def test_double_enter_with_one_try_left_opens_one_guard_and_sends_nothing(make_demo, kiosk) -> None:  # type: ignore[no-untyped-def]
    """The report: 1 try left, a PIN, Enter twice quickly → DuplicateIds 'last-try-dialog', exit 1."""
    backend, card = make_demo()
    backend.settings = dataclasses.replace(backend.settings, kiosk=kiosk)
    card.state.pin_retries = 1
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await type_pin(pilot, WRONG)
        await wait_for(pilot, lambda: "1 try left" in screen_text(app))
        double(app)
        await settle(pilot)
        assert_sane(app)
        # The second Enter either found the Logon latch, or the guard with Cancel focused: no PIN sent.
        assert dialogs(app, "last-try-dialog") <= 1
        double(app)  # and again, at whatever now has the focus
        await settle(pilot)
        assert_sane(app)
    assert card.state.pin_retries == 1
    assert app.return_code in (None, 0)


async def test_double_enter_sends_the_pin_once(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await type_pin(pilot, WRONG)
        double(app)
        await wait_for(pilot, lambda: "2 tries left" in screen_text(app))
        await settle(pilot)
        assert_sane(app)
    assert card.state.pin_retries == 2  # one wrong PIN, one try


async def test_double_click_on_logon_sends_the_pin_once(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await type_pin(pilot, WRONG)
        double_click(app.screen.query_one("#logon-button", Button))
        await wait_for(pilot, lambda: "2 tries left" in screen_text(app))
        await settle(pilot)
        assert_sane(app)
    assert card.state.pin_retries == 2


async def test_double_click_on_send_pin_sends_it_once(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    card.state.pin_retries = 2
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await type_pin(pilot, WRONG)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "1 try left" in screen_text(app))
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and app.screen.id == "last-try-dialog")
        assert app.screen.focused is not None and app.screen.focused.id == "cancel-button"
        double_click(app.screen.query_one("#ok-button", Button))
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        await settle(pilot)
        assert_sane(app)
    assert card.state.pin_retries == 3


async def test_every_renewal_dialog_survives_double_enter(make_demo) -> None:  # type: ignore[no-untyped-def]
    """Updates available, PIN again, Next, the last Next and the confirmation: each Enter twice.
    Before: the second answer closed the pane under the dialog (or crashed on a duplicate id)."""
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        double(app, "u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        await settle(pilot)
        assert_sane(app)
        assert dialogs(app, "updates-available-dialog") == 1
        double(app)
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        await settle(pilot)
        assert_sane(app)
        assert dialogs(app, "pin-dialog") == 1
        await pilot.press(*PIN)
        double(app)
        seen_next = 0
        while True:
            await wait_for(pilot, lambda: isinstance(app.screen, (NextDialog, MessageDialog)), timeout_s=60)
            assert_sane(app)
            assert isinstance(app.screen_stack[1], WriteCertificatesScreen)
            if isinstance(app.screen, MessageDialog):
                break
            seen_next += 1
            dialog = app.screen
            double(app)
            await wait_for(pilot, lambda: app.screen is not dialog)
            await settle(pilot, 0.2)
            assert_sane(app)
        assert seen_next == 2  # "1 of 2" and the last "2 of 2", once each
        assert app.screen.id == "confirmation-dialog"
        double(app)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and app.screen.renewed is not None)
        await settle(pilot)
        assert_sane(app)
    audit = [e for e in backend.audit.recent(20) if e.get("outcome") == "renewed"]
    assert sorted(e["slot"] for e in audit) == ["9A", "9C"]  # one renewal, not two


async def test_error_dialog_double_enter_and_the_same_error_twice(make_demo) -> None:  # type: ignore[no-untyped-def]
    from card.errors import CardError

    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        error = CardError("the card answered 6F 00")
        app.show_error(error)
        app.show_error(error)  # the same error reported twice (a worker and a message)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        await settle(pilot)
        assert_sane(app)
        assert dialogs(app, "error-dialog") == 1
        app.show_error(CardError("another problem"))  # a different error waits for the first
        await settle(pilot)
        assert_sane(app)
        double(app)
        await wait_for(pilot, lambda: "another problem" in screen_text(app))
        await settle(pilot)
        assert_sane(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        assert_sane(app)


async def test_change_passcode_double_enter_changes_once(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        double(app, "p")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await settle(pilot)
        assert_sane(app)
        await pilot.press(*PIN, "enter", *"13572468", "enter", *"13572468")
        double(app)
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and app.screen.id == "pin-changed-dialog")
        await settle(pilot)
        assert_sane(app)
        double(app)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        await settle(pilot)
        assert_sane(app)
    assert card.state.pin == "13572468" and card.state.pin_retries == 3
    changes = [e for e in backend.audit.recent(20) if e.get("event") == "change_pin"]
    assert [e["outcome"] for e in changes] == ["changed"]


async def test_unlock_double_click_sends_the_puk_once(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    allow_unlock(backend)
    card.state.pin_retries = 0
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: "blocked" in screen_text(app))
        double_click(app.screen.query_one("#unlock-button", Button))
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await settle(pilot)
        assert_sane(app)
        await pilot.press(*"00000000", "enter", *"654321", "enter", *"654321")
        double_click(app.screen.query_one("#ok-button", Button))
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        await settle(pilot)
        assert_sane(app)
    assert card.state.puk_retries == card.state.puk_max_retries - 1  # one wrong PUK, one try


# -- duplicate messages --------------------------------------------------------------------------
async def test_renewal_finished_twice_opens_one_dialog(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    app = make_app(backend)
    messages: list[object] = []
    async with app.run_test(size=(100, 32), message_hook=messages.append) as pilot:
        await to_card(pilot)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NextDialog), timeout_s=60)
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(isinstance(m, RenewalFinished) for m in messages), timeout_s=60)
        finished = next(m for m in messages if isinstance(m, RenewalFinished))
        pane = app.screen_stack[1]
        pane.post_message(RenewalFinished(finished.result))
        pane.post_message(RenewalFinished(finished.result))
        await settle(pilot)
        assert_sane(app)
        assert dialogs(app, "next-dialog") == 1


async def test_next_requested_twice_opens_one_dialog_and_answers_both(make_demo) -> None:  # type: ignore[no-untyped-def]
    """The card thread's question arriving twice shows one *Next*; its answer goes on once."""
    from concurrent.futures import Future

    from card.piv import Slot
    from card.renewal import SlotResult
    from tui.messages import NextRequested

    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        answer: Future[bool] = Future()
        result = SlotResult(Slot.AUTHENTICATION, "PIV Authentication", None)
        app.post_message(NextRequested(result, 1, 2, answer))
        app.post_message(NextRequested(result, 1, 2, answer))
        await wait_for(pilot, lambda: isinstance(app.screen, NextDialog))
        await settle(pilot)
        assert_sane(app)
        assert dialogs(app, "next-dialog") == 1
        double(app)
        await wait_for(pilot, lambda: answer.done())
        await settle(pilot)
        assert_sane(app)
        assert answer.result() is True


async def test_card_removed_and_inserted_twice(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        app.post_message(CardRemoved())
        app.post_message(CardRemoved())
        await wait_for(pilot, lambda: isinstance(app.screen, LoggedOffScreen))
        await settle(pilot)
        assert_sane(app)
        app.post_message(CardInserted())
        app.post_message(CardInserted())
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
        await settle(pilot)
        assert_sane(app)


# -- item 2: the last-try guard in front of every PIN entry ------------------------------------
async def wrong_pin_again(pilot, pin: str = WRONG) -> None:  # type: ignore[no-untyped-def]
    """From the Card tab: Update My Card → OK → PIN again ``pin`` → OK."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
    await pilot.press("u")
    await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
    await pilot.press(*pin, "enter")


async def test_pin_again_with_one_try_left_asks_first_and_blocking_ends_the_update(make_demo) -> None:  # type: ignore[no-untyped-def]
    """Before: with 1 try left one wrong PIN at *PIN again* blocked the card without a word, the
    Card tab kept offering the update and the logon pane kept saying 1 try was left."""
    backend, card = make_demo()
    allow_unlock(backend)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        for left in (2, 1):
            await wrong_pin_again(pilot)
            await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
            assert card.state.pin_retries == left
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        # 1 try left: the guard, with Cancel focused; Enter sends nothing.
        await wrong_pin_again(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and app.screen.id == "last-try-dialog")
        assert app.screen.focused is not None and app.screen.focused.id == "cancel-button"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        assert card.state.pin_retries == 1
        # Sent on purpose: the card is blocked, and says so everywhere.
        await wrong_pin_again(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and app.screen.id == "last-try-dialog")
        await pilot.click("#ok-button")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        assert card.state.pin_retries == 0
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        await wait_for(pilot, lambda: "Your card is blocked" in screen_text(app))
        assert "local Registration Authority" in screen_text(app)
        assert app.screen.query_one("#update-button", Button).disabled
        assert "update_card" not in {b.binding.action for b in app.screen.active_bindings.values()}
        await pilot.press("u")  # not offered: nothing is asked, nothing is sent
        await settle(pilot)
        assert isinstance(app.screen, CardScreen)
        app.screen.action_update_card()  # e.g. from the command palette: says why not
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog) and app.screen.id == "blocked-dialog")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LoggedOffScreen))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and "blocked" in screen_text(app))
        text = screen_text(app)
        assert "Your card is blocked" in text and "local Registration Authority" in text
        assert "1 try" not in text
        assert not app.screen.query_one("#unlock-button", Button).has_class("-hidden")
        await pilot.press(*PIN, "enter")  # nothing is sent to a blocked card, and no "1 try" question
        await settle(pilot)
        assert isinstance(app.screen, LogonScreen) and "1 try" not in screen_text(app)


async def test_logon_blocked_by_the_last_try_never_asks_about_one_try_again(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    card.state.pin_retries = 1
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await type_pin(pilot, WRONG)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        await pilot.click("#ok-button")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and "blocked" in screen_text(app))
        await pilot.press(*WRONG, "enter")
        await settle(pilot)
        assert isinstance(app.screen, LogonScreen)
        assert "Your card is blocked" in screen_text(app) and "1 try" not in screen_text(app)
    assert card.state.pin_retries == 0


async def test_change_passcode_with_one_try_left_asks_first(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        for _ in range(2):  # two wrong current PINs: 1 try left
            await pilot.press("p")
            await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
            await pilot.press(*"000000", "enter", *"13572468", "enter", *"13572468", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        assert card.state.pin_retries == 1
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await pilot.press(*"000000", "enter", *"13572468", "enter", *"13572468", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and app.screen.id == "last-try-dialog")
        assert app.screen.focused is not None and app.screen.focused.id == "cancel-button"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
    assert card.state.pin_retries == 1 and card.state.pin == PIN


async def test_unlock_with_one_puk_try_left_asks_first_where_the_card_tells(make_demo) -> None:  # type: ignore[no-untyped-def]
    """A card that answers GET METADATA (YubiKey) tells the PUK tries before the first attempt."""
    backend, card = make_demo()
    allow_unlock(backend)
    card.state.yubico_version = (5, 4, 3)
    card.state.pin_retries = 0
    card.state.puk_retries = 1
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: "blocked" in screen_text(app))
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await pilot.press(*"00000000", "enter", *"654321", "enter", *"654321")
        double(app)
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and app.screen.id == "last-try-dialog")
        await settle(pilot)
        assert_sane(app)
        assert "PUK" in screen_text(app)
        double(app)  # Cancel is focused
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
        await settle(pilot)
        assert_sane(app)
    assert card.state.puk_retries == 1


async def test_unlock_guard_after_a_wrong_puk(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    allow_unlock(backend)
    card.state.pin_retries = 0
    card.state.puk_retries = 2
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: "blocked" in screen_text(app))
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await pilot.press(*"00000000", "enter", *"654321", "enter", *"654321", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        assert "1 try left" in screen_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await pilot.press(*"00000000", "enter", *"654321", "enter", *"654321", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and app.screen.id == "last-try-dialog")
        assert "PUK" in screen_text(app)
        assert app.screen.focused is not None and app.screen.focused.id == "cancel-button"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
    assert card.state.puk_retries == 1
