"""Pilot tests of the error paths: wrong PIN, Cancel, card pulled, CA refuses, not due, expired, log off."""

from __future__ import annotations

import copy

from textual.widgets import Input

from card.piv import Slot
from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_renewal_flow import PIN, log_on, read_certs, renew_to_end
from tui.app import make_app
from tui.screens import (CardScreen, CompletedWithErrorsScreen, ErrorDialog, LoggedOffScreen, LogonScreen,
                         MessageDialog, NextDialog, PinDialog, WriteCertificatesScreen)
from tui.screens.dialogs import format_date


def snapshot(card):  # type: ignore[no-untyped-def]
    return copy.deepcopy(card.state.keys), copy.deepcopy(card.state.objects)


async def open_update(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await log_on(pilot)
    await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
    await pilot.press("u")


async def test_wrong_pin_shows_tries_left_and_changes_nothing(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    before = snapshot(card)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await log_on(pilot, "654321")
        await wait_for(pilot, lambda: "2 tries left" in screen_text(app))
        assert isinstance(app.screen, LogonScreen)
        assert app.screen.query_one("#pin-input", Input).value == ""
        await pilot.press(*"654321", "enter")
        await wait_for(pilot, lambda: "1 try left" in screen_text(app))
        # One try left: an explicit confirmation before the PIN is sent; Cancel sends nothing.
        await pilot.press(*"654321", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        assert app.screen.id == "last-try-dialog"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and "PIN not sent" in screen_text(app))
        assert card.state.pin_retries == 1
        # The right PIN, confirmed, logs on. Cancel is focused: Enter alone would send nothing.
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        assert app.screen.focused is not None and app.screen.focused.id == "cancel-button"
        await pilot.click("#ok-button")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
    assert snapshot(card) == before


async def test_blocked_pin_says_contact_ra(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    card.state.pin_retries = 0
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: "blocked" in screen_text(app))
        assert "Contact your local Registration Authority" in screen_text(app)
        assert "Alex Example" in screen_text(app)  # the holder is still confirmed
        await pilot.press(*PIN, "enter")  # nothing is sent to a blocked card
        await pilot.pause()
        assert isinstance(app.screen, LogonScreen) and "blocked" in screen_text(app)


async def test_pin_format_error_uses_no_try(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await log_on(pilot, "12")
        await wait_for(pilot, lambda: "No try was used" in screen_text(app))
    assert card.state.pin_retries == 3


async def test_pin_again_cancel_changes_nothing(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    before = snapshot(card)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await open_update(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        await pilot.press(*PIN)
        await pilot.click("#cancel-button")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        await pilot.pause()
    assert snapshot(card) == before


async def start_update_until_the_pull(pilot) -> None:  # type: ignore[no-untyped-def]
    """Logon → Update My Card → PIN again → first certificate → Next → the pull's error dialog."""
    app = pilot.app
    await open_update(pilot)
    await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
    await pilot.press(*PIN, "enter")
    await wait_for(pilot, lambda: isinstance(app.screen, NextDialog))
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))


async def test_card_pulled_then_resume(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo(fault="pull-card")
    before = read_certs(card)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await start_update_until_the_pull(pilot)
        assert "Abort this issuance" in str(app.screen.query_one("#abort-button").label)
        await pilot.press("escape")  # never aborts on a bare Escape
        await pilot.pause()
        assert isinstance(app.screen, ErrorDialog)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CompletedWithErrorsScreen))
        text = screen_text(app)
        assert "The operation was completed with errors" in text
        result = app.screen.result
        assert result.journal_kept
        assert [s.renewed for s in result.slots] == [True, False]
        assert f"Reference: {result.reference}" in text
        assert "Re-insert your card, log on again and select Update My Card" in text  # what resumes it
        # Re-insert; the demo keeps the outcome until Back to Card tab, then logon; log on; the
        # update resumes and completes both.
        card.insert()
        await wait_for(pilot, lambda: app.card_present is True)
        assert isinstance(app.screen, CompletedWithErrorsScreen)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        assert "unfinished update" in screen_text(app)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        assert app.screen.id == "resume-dialog"
        assert f"An unfinished update was found (reference {result.reference})" in str(
            app.screen.query_one("#dialog-title").render())
        await pilot.press("escape")  # Cancel: nothing happens
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        await renew_to_end(pilot)
    card.insert()
    after = read_certs(card)
    for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
        assert after[slot].serial_number != before[slot].serial_number
        assert (after[slot].not_valid_after_utc - before[slot].not_valid_after_utc).days > 600
    assert backend.journals.load(_card_id(backend, card)) is None


def _card_id(backend, card) -> str:  # type: ignore[no-untyped-def]
    from card.piv import PivSession
    from card.renewal import read_card

    session = PivSession(card)
    summary = read_card(session, backend.settings)
    assert summary.card_id is not None
    return summary.card_id


async def test_ca_refuses_changes_nothing(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo(fault="ca-refuses")
    before = snapshot(card)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await open_update(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        text = screen_text(app)
        assert "refused" in text and "Nothing was changed" in text
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
    assert snapshot(card) == before


async def test_not_due_is_up_to_date(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo(expires_in_days=200)
    before = snapshot(card)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await open_update(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        summary = app.summary
        nxt = summary.next_renewal_date(backend.settings.window_days)
        assert f"Your card is up to date; next renewal from {nxt.isoformat()}" in screen_text(app)
    assert snapshot(card) == before


async def test_expired_says_contact_ra(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo(expires_in_days=-1)
    before = snapshot(card)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and "Expired" in screen_text(app))
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        assert "Contact your local Registration Authority" in screen_text(app)
    assert snapshot(card) == before


async def test_log_off_and_card_removal(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LoggedOffScreen))
        assert "You are logged off. Remove your card, then insert it and log on again to test it." in screen_text(app)
        assert not card.pin_verified
        card.remove()
        await wait_for(pilot, lambda: "Card removed" in screen_text(app))
        card.insert()
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
        # Removal while logged on logs off (policy "logoff").
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        card.remove()
        await wait_for(pilot, lambda: isinstance(app.screen, LoggedOffScreen))
        assert "The card was removed" in screen_text(app)
        await pilot.pause()


async def test_demo_pull_card_puts_the_card_back_and_resumes(make_demo) -> None:  # type: ignore[no-untyped-def]
    """The demo's pull-card fault is no dead end: the card comes back by itself, logon resumes."""
    backend, card = make_demo(fault="pull-card", reinsert_after_s=1.0)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await start_update_until_the_pull(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CompletedWithErrorsScreen))
        # nobody calls card.insert(): the demo card returns; the outcome stays until the holder
        # leaves it, and is then asked to log on
        # 60 s only detects a hang: on a loaded machine (CI runs sweeps beside) the report comes late
        await wait_for(pilot, lambda: app.card_present is True and card.present, timeout_s=60)
        assert isinstance(app.screen, CompletedWithErrorsScreen)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        assert "unfinished update" in screen_text(app)
        await renew_to_end(pilot)
    assert backend.journals.load(_card_id(backend, card)) is None


async def test_an_ra_reason_with_brackets_is_shown_literally_with_the_reference(make_demo) -> None:  # type: ignore[no-untyped-def]
    """Text from outside (an RA's reason, a CA's message) is never read as Textual markup: square
    brackets neither crash the app nor vanish, and the reference the next step mentions is shown."""
    from card.enrollment.base import RaRejected

    backend, _ = make_demo()
    app = make_app(backend)
    error = RaRejected("the RA refused the renewal of slot 9A: see [/help] or [ticket=4711] call 4321")
    error.reference = "CR-ABC123"
    async with app.run_test(size=(100, 32)) as pilot:
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        app.show_error(error)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        text = " ".join(screen_text(app).split())
        assert "The Registration Authority refused the renewal" in text
        assert "see [/help] or [ticket=4711] call 4321" in text
        assert "Reference: CR-ABC123" in text
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))


async def test_a_too_short_pin_is_cleared_so_the_next_one_is_sent_alone(make_demo) -> None:  # type: ignore[no-untyped-def]
    """'12' Enter is refused before any APDU (F07); the field is emptied, so typing the right PIN
    next sends just that PIN (not '12123456', which would spend a try)."""
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await log_on(pilot, "12")
        await wait_for(pilot, lambda: "No try was used" in screen_text(app))
        assert app.screen.query_one("#pin-input", Input).value == ""
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
    assert card.state.pin_retries == card.state.pin_max_retries  # no try spent


async def test_ctrl_q_during_a_renewal_does_not_leave_it_unfinished(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        app.renewing = True  # as while the engine writes (the demo card is too fast to catch mid-write)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app.is_running and app.return_code is None
        assert any("being updated" in str(n.message) for n in app._notifications)
        app.renewing = False
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_code == 0


async def test_a_resumed_update_shows_the_expiry_of_the_certificates_it_replaces(make_demo) -> None:  # type: ignore[no-untyped-def]
    """Fresh-user finding 7: on a resume 9A (renewed before the pull) read "Old expiry 2028-12-03",
    the new certificate's date, as if nothing had changed. It shows the replaced one's now."""
    backend, card = make_demo(fault="pull-card")
    before = read_certs(card)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await start_update_until_the_pull(pilot)
        await pilot.press("enter")  # Abort this issuance
        await wait_for(pilot, lambda: isinstance(app.screen, CompletedWithErrorsScreen))
        card.insert()
        await wait_for(pilot, lambda: app.card_present is True)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and app.screen.id == "resume-dialog")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NextDialog))  # 9C written: its Next
        pane = next(s for s in app.screen_stack if isinstance(s, WriteCertificatesScreen))
        shown = {key: row.old_expiry for key, row in pane.rows.items()}
    assert shown == {slot.hex: format_date(before[slot].not_valid_after_utc)
                     for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE)}
