"""Pilot tests of the Card tab additions: certificate details, Change passcode, Unlock card."""

from __future__ import annotations

import dataclasses

from textual.widgets import Button, DataTable

from card.certificates import fingerprint
from card.piv import Slot
from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_renewal_flow import PIN, log_on, read_certs
from tui.app import make_app
from tui.screens import CardScreen, ErrorDialog, LoggedOffScreen, LogonScreen, MessageDialog
from tui.screens.dialogs import NewPinDialog


async def to_card(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await log_on(pilot)
    await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)


def allow_unlock(backend) -> None:  # type: ignore[no-untyped-def]
    backend.settings = dataclasses.replace(backend.settings, allow_unlock=True)


async def test_certificate_details_follow_the_selection(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    certs = read_certs(card)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: app.screen.query_one("#certificate-list", DataTable).has_focus)
        for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
            cert = certs[slot]
            text = str(app.screen.query_one("#certificate-details").render())
            assert f"({slot.hex})" in text and "Due for renewal" in text
            assert cert.subject.rfc4514_string() in text
            assert cert.issuer.rfc4514_string() in text
            assert f"{cert.serial_number:X}" in text
            assert f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M}" in text
            assert f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M}" in text
            assert "RSA2048" in text
            assert fingerprint(cert).upper()[:2] + ":" in text and fingerprint(cert).upper()[-2:] in text
            await pilot.press("down")
            await pilot.pause()


async def test_change_passcode(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        assert not app.screen.query("#unlock-button")  # not configured: not offered
        # Cancel (Escape) sends nothing.
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        # Two different new PINs: refused in the dialog, no try used.
        await pilot.click("#change-pin-button")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await pilot.press(*PIN, "enter", *"654321", "enter", *"654322", "enter")
        await wait_for(pilot, lambda: "differ" in screen_text(app))
        assert card.state.pin_retries == 3 and card.state.pin == PIN
        await pilot.press("escape")
        # A wrong current PIN: the tries left, the PIN unchanged.
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await pilot.press(*"000000", "enter", *"654321", "enter", *"654321", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        assert "2 tries left" in screen_text(app) and "not changed" in screen_text(app)
        await pilot.press("enter")
        # The right one (Enter on the last field accepts).
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await pilot.press(*PIN, "enter", *"654321", "enter", *"654321", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        assert app.screen.id == "pin-changed-dialog"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
    assert card.state.pin == "654321" and card.state.pin_retries == 3
    lines = backend.audit.recent(5)
    assert any(e.get("event") == "change_pin" and e.get("outcome") == "changed" for e in lines)
    assert PIN not in backend.audit.path.read_text() and "654321" not in backend.audit.path.read_text()


async def test_unlock_card_from_the_logon_pane_when_allowed(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    allow_unlock(backend)
    card.state.pin_retries = 0
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: "blocked" in screen_text(app))
        button = app.screen.query_one("#unlock-button", Button)
        await wait_for(pilot, lambda: not button.has_class("-hidden"))
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await pilot.press(*"00000000", "enter", *"654321", "enter", *"654321", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        assert "PUK was not accepted. 2 tries left" in screen_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
        await pilot.click("#unlock-button")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await pilot.press(*card.state.puk, "enter", *"654321", "enter", *"654321", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        assert app.screen.id == "unlocked-dialog"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and button.has_class("-hidden"))
        await log_on(pilot, "654321")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
    assert card.state.pin_retries == 3


async def test_unlock_card_on_the_card_tab_only_when_allowed(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        await pilot.press("k")  # not configured: nothing happens
        await pilot.pause()
        assert isinstance(app.screen, CardScreen)
        assert "unlock_card" not in {b.binding.action for b in app.screen.active_bindings.values()}
    backend, card = make_demo()
    allow_unlock(backend)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        await pilot.click("#unlock-button")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog) and app.screen.id == "unlock-dialog")
        await pilot.press(*card.state.puk, "enter", *"87654321", "enter", *"87654321", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
    assert card.state.pin == "87654321"


async def test_change_passcode_blocking_the_pin_logs_off(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        card.state.pin_retries = 1
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await pilot.press(*"000000", "enter", *"654321", "enter", *"654321", "enter")
        # One try left: the last-try guard asks first (since the logon no longer leaves the card
        # verified, tester F-4, the card's counter is read); sent on purpose.
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and app.screen.id == "last-try-dialog")
        await pilot.click("#ok-button")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog) and "blocked" in screen_text(app))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, LoggedOffScreen))
    assert not app.is_logged_on


async def test_card_tab_shows_a_broken_slot_as_an_error_beside_the_good_one(make_demo) -> None:  # type: ignore[no-untyped-def]
    """Issue 3 / F15: junk in 9A is shown as that slot's error, in words; 9C still renders."""
    backend, card = make_demo()
    card.state.objects["5FC105"] = "700468656A0A710100"
    app = make_app(backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await to_card(pilot)
        text = screen_text(app) + "\n".join(
            str(cell) for table in app.screen.query(DataTable) for row in range(table.row_count)
            for cell in table.get_row_at(row))
        assert "Unreadable" in text and "unreadable object, 9 bytes" in text
        assert "Due for renewal" in text  # 9C


async def test_card_tab_says_when_the_card_itself_expires_within_the_window(make_demo) -> None:  # type: ignore[no-untyped-def]
    """Break-it (ab47c29): a card whose CHUID expires in 10 days showed only "due for renewal"."""
    import datetime as dt

    from card.piv import OBJECT_CHUID, build_chuid
    from tests.tui.conftest import screen_text

    backend, card = make_demo()
    expiry = dt.date.today() + dt.timedelta(days=10)
    card.state.objects[OBJECT_CHUID.hex().upper()] = build_chuid(bytes(range(16)), expiry).hex().upper()
    app = make_app(backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await to_card(pilot)
        text = screen_text(app)
        assert f"This card itself expires on {expiry.isoformat()}" in text and "for a new card" in text
        assert backend.settings.ra_contact in text
