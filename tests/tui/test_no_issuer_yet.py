"""Fresh-user finding 10: on a reader host with no configuration file yet, ``cardrenew`` refused to
start ("issuer.directory is needed …", exit 2) although ``status`` works and the README says the
TUI starts without a card or reader. Now the TUI starts: the holder logs on and sees the card, and
*Update My Card* shows the configuration error with the file to fix; nothing on the card changes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from card.backend import build_issuer
from card.config import ConfigError, load_settings
from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_check_action import destructive_sent, open_check, report_of
from tests.tui.test_renewal_flow import PIN, log_on, read_certs
from tui.app import make_app
from tui.cli.interactive import tui_backend
from tui.screens import CardScreen, ErrorDialog, MessageDialog, PinDialog


@pytest.fixture
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConfigError:
    """No configuration file anywhere; returns the error the built-in defaults give for the issuer."""
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.delenv("CARDRENEW_CONFIG", raising=False)
    settings = load_settings(None)
    with pytest.raises(ConfigError) as raised:
        build_issuer(settings, cancel=threading.Event())
    return raised.value


def test_the_tui_backend_starts_without_an_issuer_and_keeps_why(no_config: ConfigError) -> None:
    backend = tui_backend(load_settings(None), None, threading.Event())
    try:
        assert backend.issuer is None
        assert isinstance(backend.issuer_problem, ConfigError)
        assert "issuer.directory is needed" in str(backend.issuer_problem)
        assert "no configuration file was found" in str(backend.issuer_problem)  # break-it B-1
        assert "Write a configuration file" in (backend.issuer_problem.next_step or "")
    finally:
        backend.close()


async def test_update_my_card_shows_the_configuration_error_and_changes_nothing(make_demo, no_config) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    backend.issuer, backend.issuer_problem = None, no_config
    before = {slot: cert.serial_number for slot, cert in read_certs(card).items()}
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        await pilot.press("u")  # the error at once: not "Updates are available" and the PIN again (break-it B-2)
        await wait_for(pilot, lambda: isinstance(app.screen, (ErrorDialog, MessageDialog, PinDialog)))
        assert isinstance(app.screen, ErrorDialog), app.screen
        text = screen_text(app)
        assert "Configuration error" in text and "issuer.directory is needed" in text, text
        assert "configuration file" in text  # where to write it
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
    assert {slot: cert.serial_number for slot, cert in read_certs(card).items()} == before
    assert card.state.pin_retries == 3


async def test_check_names_the_key_as_written_and_where_to_write_the_file(make_demo, no_config) -> None:  # type: ignore[no-untyped-def]
    """Break-it B-1: the Check's CA line read "Issuer.directory is needed …" (no such key), without
    "no configuration file was found", and sent the installer to "the file named in the message"."""
    backend, card = make_demo()
    backend.issuer, backend.issuer_problem = None, no_config.naming(None)
    app = make_app(backend)
    async with app.run_test(size=(120, 50)) as pilot:
        await open_check(pilot)
        await pilot.press(*PIN, "enter")
        text = " ".join((await report_of(pilot)).split())
    assert "FAILED Certificate authority: issuer.directory is needed" in text, text
    assert "no configuration file was found" in text and "Write a configuration file" in text, text
    assert destructive_sent(card) == []
