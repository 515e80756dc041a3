"""``cardrenew change-pin`` / ``unblock`` and the TUI's *Change passcode* / *Unlock card* say the same
words (card/words.py): the CLI's line and the TUI's dialog, on the demo card, for a changed PIN and for
a PUK that blocks."""

from __future__ import annotations

import dataclasses
import io

from card.words import CARD_UNLOCKED, PIN_CHANGED, blocked_by_change
from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_card_tab import to_card
from tests.tui.test_same_words import cli_on
from tui.app import make_app
from tui.cli import main
from tui.screens import ErrorDialog, MessageDialog
from tui.screens.dialogs import NewPinDialog


def cli(monkeypatch, capsys, *argv: str, stdin: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_a_changed_pin_reads_the_same(make_demo, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    cli_on(monkeypatch, backend, card)
    code, out, _ = cli(monkeypatch, capsys, "change-pin", "--pin-stdin", stdin="123456\n654321\n654321\n")
    assert code == 0 and out.strip() == f"{PIN_CHANGED.title}. {PIN_CHANGED.message}"
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        card.state.pin = "123456"  # the TUI changes it back and forth on the same card
        await to_card(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await pilot.press(*"123456", "enter", *"654321", "enter", *"654321", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and app.screen.id == "pin-changed-dialog")
        text = screen_text(app)
    assert PIN_CHANGED.title in text and PIN_CHANGED.message in text


async def test_an_unlock_and_a_blocked_puk_read_the_same(make_demo, monkeypatch, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "config.toml").write_text("[ui]\nallow_unlock = true\n")
    monkeypatch.setenv("CARDRENEW_CONFIG", str(tmp_path / "config.toml"))
    backend, card = make_demo()
    backend.settings = dataclasses.replace(backend.settings, allow_unlock=True)
    cli_on(monkeypatch, backend, card)
    card.state.pin_retries, card.state.puk_retries = 0, 1
    code, _, err = cli(monkeypatch, capsys, "unblock", "--pin-stdin", "--last-try", stdin="87654321\n654321\n654321\n")
    words = blocked_by_change("PUK", backend.settings.ra_contact)
    assert code == 4 and f"{words.title}: {words.message}" in err and f"Next step: {words.next_step}" in err
    card.state.puk_retries = 3
    code, out, _ = cli(monkeypatch, capsys, "unblock", "--pin-stdin", stdin="12345678\n654321\n654321\n")
    assert code == 0 and out.strip() == f"{CARD_UNLOCKED.title}. {CARD_UNLOCKED.message}"
    card.state.pin, card.state.pin_retries, card.state.puk_retries = "123456", 3, 1
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        await pilot.press(*"87654321", "enter", *"654321", "enter", *"654321", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        text = screen_text(app)
    assert words.title in text and words.message in text and words.next_step in text
