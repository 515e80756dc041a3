"""``cardrenew renew --check`` on a side-by-side PKCS#11 token (tester F-26): the dry run's checks per key
(by CKA_ID), through the real CLI (``tui.cli.main``) on a SoftHSM2 token of its own; the judge of
"nothing changed" is ``pkcs11-tool -O`` (every object, private keys included) before and after."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from card.pkcs11 import Pkcs11Token
from card.words import FEW_TRIES
from tests.card.test_check_ca_unreachable import SilentCA
from tests.pkcs11 import judge
from tests.pkcs11.softhsm import TOKEN_LABEL, SoftHsm
from tests.pkcs11.test_token_ui import config
from tui.cli import main

pytestmark = pytest.mark.skipif(not Path("/usr/lib/softhsm/libsofthsm2.so").is_file(), reason="softhsm2 is not installed")
KEYS = ("01", "02")


@pytest.fixture(autouse=True)
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the dry run asked of the token that uses the PIN or a key: each ``log_in`` and ``sign``."""
    calls: list[str] = []
    log_in, sign = Pkcs11Token.log_in, Pkcs11Token.sign

    def counted_log_in(self: Pkcs11Token, pin: Any) -> None:
        calls.append("log_in")
        log_in(self, pin)

    def counted_sign(self: Pkcs11Token, ref: Any, key_type: Any, message: bytes) -> bytes:
        calls.append(f"sign {ref.hex}")
        return sign(self, ref, key_type, message)

    monkeypatch.setattr(Pkcs11Token, "log_in", counted_log_in)
    monkeypatch.setattr(Pkcs11Token, "sign", counted_sign)
    return calls


def check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: Path, pin: str
          ) -> tuple[int, dict[str, Any], dict[tuple[str, str | None], dict[str, Any]]]:
    monkeypatch.setattr("sys.stdin", io.StringIO(pin + "\n"))
    code = main(["renew", "--check", "--pin-stdin", "--json", "--config", str(path)])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["exit_code"] == code, captured.err
    return code, report, {(c["check"], c["slot"]): c for c in report["checks"]}


def test_every_check_passes_on_the_token_and_nothing_on_it_changes(
        softhsm: SoftHsm, ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, sent: list[str]) -> None:
    before = judge.objects(softhsm)
    code, report, by = check(monkeypatch, capsys, config(tmp_path, softhsm, ca_dir), softhsm.pin)
    assert code == 0 and report["outcome"] == "passed" and report["failed"] == 0, report
    assert judge.objects(softhsm) == before  # no key made, nothing written, relabelled or deleted
    card = by[("card", None)]
    assert card["outcome"] == "passed" and TOKEN_LABEL in card["message"] and "serial " in card["message"], card
    assert by[("pin", None)]["outcome"] == "passed" and by[("state_directory", None)]["outcome"] == "passed"
    assert by[("ca", None)]["outcome"] == "passed" and by[("certificates", None)]["outcome"] == "passed"
    assert "management_key" not in {c for c, _ in by}  # SoftHSM2 writes in the user's session: no such key
    for key, kt in zip(KEYS, ("RSA2048", "ECCP256"), strict=True):
        key_type = by[("key_type", key)]
        assert key_type["outcome"] == "passed" and key_type["message"].startswith(f"{kt}: the token's mechanisms"), key_type
        assert by[("certificate_size", key)]["outcome"] == "passed"
        assert by[("ra_grant", key)]["outcome"] == "passed", by[("ra_grant", key)]
    assert sent.count("log_in") == 1 and sorted(s for s in sent if s.startswith("sign")) == ["sign 01", "sign 02"]


def test_a_wrong_pin_fails_the_pin_check_and_nothing_else_is_sent(
        softhsm: SoftHsm, ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, sent: list[str]) -> None:
    before = judge.objects(softhsm)
    code, report, by = check(monkeypatch, capsys, config(tmp_path, softhsm, ca_dir), "654321")
    assert code == 14 and [c["check"] for c in report["checks"] if c["outcome"] == "failed"] == ["pin"], report
    pin = by[("pin", None)]  # the tries as the token reports them (CKF_USER_PIN_COUNT_LOW: "few")
    assert pin["code"] == "PIN" and pin["message"] == f"The PIN was not accepted. {FEW_TRIES}", pin
    for key in KEYS:
        grant = by[("ra_grant", key)]
        assert grant["outcome"] == "skipped" and "the PIN was not verified" in grant["message"], grant
    assert sent == ["log_in"]  # one C_Login; no key was used
    assert judge.objects(softhsm) == before


def test_a_silent_ca_skips_the_checks_that_need_it(
        softhsm: SoftHsm, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        sent: list[str]) -> None:
    server = SilentCA()
    try:
        path = tmp_path / "config.toml"
        path.write_text(f'[issuer]\ntype = "scep"\nurl = "http://127.0.0.1:{server.port}/scep"\n'
                        f'ca_fingerprint = "{"00" * 32}"\nchallenge = "secret-challenge"\ntimeout_s = 1\n\n'
                        f'[card]\ninterface = "pkcs11"\nmodule = "{softhsm.module}"\ntoken_label = "{softhsm.label}"\n',
                        encoding="utf-8")
        code, report, by = check(monkeypatch, capsys, path, softhsm.pin)
    finally:
        server.close()
    assert code == 14 and [c["check"] for c in report["checks"] if c["outcome"] == "failed"] == ["ca"], report
    assert by[("ca", None)]["code"] == "CA-TIMEOUT" and server.accepted == 1
    for key in KEYS:
        assert by[("key_type", key)]["outcome"] == by[("ra_grant", key)]["outcome"] == "skipped"
        assert "could not be reached" in by[("ra_grant", key)]["message"]
        assert "the token's mechanisms include it" in by[("key_type", key)]["message"], by[("key_type", key)]
    assert by[("pin", None)]["outcome"] == "passed" and not [s for s in sent if s.startswith("sign")]


async def test_the_card_tabs_check_runs_on_the_token_and_changes_nothing(
        softhsm: SoftHsm, ca_dir: Path, tmp_path: Path) -> None:
    """The Card tab's *Check* said "Check not available" on a PKCS#11 token; it now shows the dry run's report."""
    from textual.widgets import Input

    from tests.pkcs11.test_token_ui import tui_backend
    from tests.tui.conftest import screen_text, wait_for
    from tui.app import make_app
    from tui.screens import CardScreen, LogonScreen
    from tui.screens.check import CheckPinDialog, CheckReportDialog

    before = judge.objects(softhsm)
    app = make_app(tui_backend(config(tmp_path, softhsm, ca_dir)))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and "Card detected" in screen_text(app))
        app.screen.query_one("#pin-input", Input).focus()
        await pilot.press(*softhsm.pin, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers
                       and "Authentication certificate" in screen_text(app))
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckPinDialog))
        await pilot.press(*softhsm.pin, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckReportDialog))
        text = screen_text(app)
        assert "Every check passed" in text and "Check not available" not in text, text
        for line in (f"passed   Card: The PKCS#11 token {TOKEN_LABEL}", "passed   PIN: Accepted.",
                     "passed   Renewal grant (01): The embedded CA would grant it now",
                     "passed   Renewal grant (02): The embedded CA would grant it now"):
            assert line in text, text
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
    assert judge.objects(softhsm) == before
