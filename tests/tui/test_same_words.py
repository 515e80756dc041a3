"""The CLI and the TUI say the same words for the same card (issue 13: what the user is told is
written once, in card/words.py). Each state is shown twice on one in-process card: by the real
``cardrenew`` entry point (``tui.cli.main``, its PC/SC backend replaced by that card) and by the
real app driven with Pilot; the title, the message and the next step must read the same.

Before card/words.py the CLI said "Your card is up to date. Next renewal from …" where the TUI
said "…; next renewal from …", "self-service renewal is not allowed" where the TUI said "… of an
expired certificate is not allowed; nothing was changed on your card", and "1 tries left".
"""

from __future__ import annotations

import io
import json

import pytest

from card.backend import Backend
from card.emulator.card import SoftPivCard
from card.service import CardService
from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_renewal_flow import log_on
from tui.app import make_app
from tui.cli import EXIT_NOT_DUE, EXIT_REFUSED, main
from tui.screens import CardScreen, ErrorDialog, LogonScreen, MessageDialog


def cli_on(monkeypatch: pytest.MonkeyPatch, demo: Backend, card: SoftPivCard) -> None:
    """``cardrenew status`` / ``renew`` run on ``card`` with the demo's settings, as the app does."""
    def backend(settings, reader=None, **_):  # type: ignore[no-untyped-def]
        return Backend(demo.settings, CardService(lambda: card, lambda: True), demo.issuer, demo.journals,
                       demo.audit, "In-process card")

    monkeypatch.setattr("card.backend.pcsc_backend", backend)


def cli_renew_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    monkeypatch.setattr("sys.stdin", io.StringIO("123456\n"))
    code = main(["renew", "--yes", "--pin-stdin", "--json"])
    return code, json.loads(capsys.readouterr().out)


async def tui_dialog_after_update(backend: Backend, dialog: type) -> str:  # type: ignore[type-arg]
    """Log on, press *Update My Card* (u), and return the text of the dialog that answers."""
    app = make_app(backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, dialog))
        return screen_text(app)


async def test_an_expired_certificate_reads_the_same(make_demo, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo(expires_in_days=-1)
    cli_on(monkeypatch, backend, card)
    code, out = cli_renew_json(monkeypatch, capsys)
    assert code == out["exit_code"] == EXIT_REFUSED
    error = out["error"]
    shown = await tui_dialog_after_update(backend, ErrorDialog)
    assert error["title"] in shown and error["message"] in shown and f"Next step: {error['next_step']}" in shown
    assert "has expired" in error["message"] and "Registration Authority" in error["next_step"]


async def test_an_up_to_date_card_reads_the_same(make_demo, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo(expires_in_days=200)
    cli_on(monkeypatch, backend, card)
    code, out = cli_renew_json(monkeypatch, capsys)
    assert code == out["exit_code"] == EXIT_NOT_DUE and out["outcome"] == "up_to_date"
    shown = await tui_dialog_after_update(backend, MessageDialog)
    assert out["message"] in shown and "up to date" in out["message"] and out["next_renewal_date"] in out["message"]


async def test_one_pin_try_left_reads_the_same(make_demo, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    card.state.pin_retries = 1
    cli_on(monkeypatch, backend, card)
    assert main(["status"]) == EXIT_NOT_DUE
    pin_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("PIN:"))
    cli_words = pin_line.removeprefix("PIN:").strip()
    app = make_app(backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
        await wait_for(pilot, lambda: "try left" in screen_text(app))
        assert cli_words.startswith("1 try left") and cli_words in screen_text(app)
    assert card.state.pin_retries == 1  # neither of them spent a try


async def test_a_ca_refusal_reads_as_sentences_on_the_card_tab(make_demo) -> None:  # type: ignore[no-untyped-def]
    """The CA's refusal is a lower-case clause ("the Registration Authority has suspended …") made
    to follow ``Title:`` in the CLI. Was: the Card tab said "The last update stopped: The
    certificate authority refused the renewal. the Registration Authority has …"."""
    from tests.tui.test_renewal_flow import PIN
    from tui.screens import PinDialog

    backend, _ = make_demo(fault="ca-refuses")
    app = make_app(backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and "The last update stopped" in screen_text(app))
        stopped = next(line for line in screen_text(app).splitlines() if "The last update stopped" in line)
        sentences = [part.strip() for part in stopped.split(". ") if part.strip()]
        assert all(part[0].isupper() for part in sentences[1:]), stopped


def test_only_the_funnel_makes_an_error_dialog() -> None:
    """Every error reaches the screen through app.show_error -> dialogs.error_dialog (issue 13: five
    dialogs made their own ErrorDialog, with their own words)."""
    from pathlib import Path

    tui = Path(__file__).resolve().parents[2] / "tui"
    makers = [f"{path.relative_to(tui.parent)}:{n}" for path in sorted(tui.rglob("*.py"))
              for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "ErrorDialog(" in line
              and not line.lstrip().startswith("class ErrorDialog(")]
    assert makers == ["tui/screens/dialogs.py:" + str(_error_dialog_line())]


def _error_dialog_line() -> int:
    import inspect

    from tui.screens import dialogs

    lines, start = inspect.getsourcelines(dialogs.error_dialog)
    return start + next(i for i, line in enumerate(lines) if "ErrorDialog(" in line)
