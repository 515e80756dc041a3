"""Break-it finding: a PIN could be copied (Ctrl+C) or cut (Ctrl+X) out of a PIN field into the
clipboard, which Textual writes to the terminal as OSC 52 (the PIN in base64): over SSH it lands in
the support engineer's clipboard. No PIN/PUK field may ever give its value to the clipboard, by a
key, by a screen selection or through ``App.copy_to_clipboard``; Ctrl+X keeps the value.
"""

from __future__ import annotations

import base64
import dataclasses

import pytest

from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_dialog_safety import allow_unlock, to_card
from tests.tui.test_renewal_flow import PIN
from tui.app import make_app
from tui.pin_input import PinInput
from tui.screens import LogonScreen, MessageDialog, PinDialog
from tui.screens.dialogs import NewPinDialog

SECRET = "987654"


def record_terminal(app) -> list[str]:  # type: ignore[no-untyped-def]
    """Every string the app writes to its terminal driver."""
    written: list[str] = []
    original = app._driver.write

    def write(data: str) -> None:
        written.append(data)
        original(data)

    app._driver.write = write
    return written


async def try_to_copy(pilot, field: PinInput, value: str, written: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Type ``value`` into ``field``, select it all, press Ctrl+C and Ctrl+X, try the screen's copy
    action and the app's copy: nothing of it reaches the clipboard or the terminal."""
    app = pilot.app
    field.focus()
    await pilot.pause()
    await pilot.press(*value)
    assert field.value == value
    for keys in (("shift+home", "ctrl+c"), ("end", "shift+home", "ctrl+x"), ("ctrl+a", "ctrl+c"),
                 ("ctrl+a", "ctrl+x")):
        await pilot.press(*keys)
        await pilot.pause()
        assert field.value == value, keys  # a cut takes nothing away
        assert value not in app.clipboard, keys
    field.selection = type(field.selection)(0, len(value))
    field.action_copy()
    field.action_cut()
    app.screen.action_copy_text() if app.screen.get_selected_text() is not None else None
    app.copy_to_clipboard(value)  # any other path: the app refuses a PIN field's value
    app.copy_to_clipboard(f"PIN: {value}\n")
    await pilot.pause()
    assert field.value == value
    assert value not in app.clipboard
    assert field.get_selection(None) is None and not field.allow_select  # type: ignore[arg-type]
    encoded = base64.b64encode(value.encode()).decode()
    assert not any("\x1b]52" in w or encoded in w for w in written), [w for w in written if "]52" in w]


@pytest.mark.parametrize("kiosk", [False, True], ids=["tui", "kiosk"])
async def test_the_logon_pin_is_never_copied_or_cut(make_demo, kiosk: bool) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    backend.settings = dataclasses.replace(backend.settings, kiosk=kiosk)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        written = record_terminal(app)
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
        await try_to_copy(pilot, app.screen.query_one("#pin-input", PinInput), SECRET, written)
        app.copy_to_clipboard("Alex Example")  # other text is still copied
        assert app.clipboard == "Alex Example"


async def test_pin_again_and_change_passcode_fields_are_never_copied_or_cut(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        written = record_terminal(app)
        await to_card(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        for field_id in ("#secret-input", "#new-pin-input", "#new-pin-again-input"):
            await try_to_copy(pilot, app.screen.query_one(field_id, PinInput), SECRET, written)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, NewPinDialog))
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        await try_to_copy(pilot, app.screen.query_one("#pin-again-input", PinInput), PIN, written)


async def test_the_puk_field_of_unlock_is_never_copied_or_cut(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    allow_unlock(backend)
    card.state.pin_retries = 0
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        written = record_terminal(app)
        await wait_for(pilot, lambda: "blocked" in screen_text(app))
        from textual.widgets import Button
        app.screen.query_one("#unlock-button", Button).press()
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await try_to_copy(pilot, app.screen.query_one("#secret-input", PinInput), "12345678", written)
