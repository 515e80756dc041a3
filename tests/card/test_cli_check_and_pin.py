"""``cardrenew renew --check``, ``change-pin`` and ``unblock`` (issue 15), the real CLI code driven in
process (``tui.cli.main``) on the in-process card: every path, its exit code, its text and JSON, its
audit record, and that no secret appears in the output, the logs or the audit log."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from card.config import Settings
from card.emulator.card import SoftPivCard
from card.enrollment.base import IssuerUnavailable
from card.piv import KeyType
from card.service import CardService
from tests.leaks import leaks

PIN, NEW_PIN, PUK, WRONG = "123456", "97979797", "12345678", "918273"
SECRETS = (PIN, NEW_PIN, PUK, WRONG, "11111111")


@pytest.fixture
def card(make_card) -> SoftPivCard:  # type: ignore[no-untyped-def]
    return make_card(key_type=KeyType.ECCP256)


class Run:
    """One ``cardrenew`` command line on ``card``: its exit code, stdout, stderr and log."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                 caplog: pytest.LogCaptureFixture, card: SoftPivCard, issuer: object) -> None:
        self.monkeypatch, self.capsys, self.caplog = monkeypatch, capsys, caplog
        monkeypatch.setattr("card.pcsc.choose_reader", lambda named=None: "Virtual card")
        monkeypatch.setattr("card.backend.pcsc_service", lambda name, *_, **__: CardService(lambda: card, lambda: True))
        self.issuer = issuer
        monkeypatch.setattr("card.backend.build_issuer", lambda settings, *_, **__: self._issuer())
        self.code, self.out, self.err = 0, "", ""

    def _issuer(self) -> object:
        if isinstance(self.issuer, Exception):
            raise self.issuer
        return self.issuer

    def __call__(self, *argv: str, stdin: str = "") -> Run:
        from tui.cli import main

        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        self.caplog.set_level(logging.DEBUG)
        self.code = main(list(argv))
        captured = self.capsys.readouterr()
        self.out, self.err = captured.out, captured.err
        return self

    @property
    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.out)

    def assert_no_secret(self) -> None:
        audit = Settings().state_dir / "audit.log"
        shown = self.out + self.err + self.caplog.text + (audit.read_text() if audit.exists() else "")
        for secret in SECRETS:
            assert leaks(shown, secret.encode()) == [], f"{secret} shown"


@pytest.fixture
def run(monkeypatch, capsys, caplog, card, ca) -> Run:  # type: ignore[no-untyped-def]
    return Run(monkeypatch, capsys, caplog, card, ca)


def audit_records() -> list[dict]:  # type: ignore[type-arg]
    path = Settings().state_dir / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def sent(card: SoftPivCard, ins: int) -> int:
    return sum(1 for apdu, _ in card.trace if apdu[1] == ins)


def unlock_config(tmp_path: Path, allow: bool = True) -> str:
    path = tmp_path / "config.toml"
    path.write_text(f"[ui]\nallow_unlock = {'true' if allow else 'false'}\n")
    return str(path)


# -- renew --check -------------------------------------------------------------------------------
def test_check_json_every_check_passed_exit_0(run: Run, card: SoftPivCard) -> None:
    r = run("renew", "--check", "--json", "--pin-stdin", stdin=PIN + "\n")
    assert r.code == 0, r.out + r.err
    report = r.json
    assert report["outcome"] == "passed" and report["exit_code"] == 0 and report["failed"] == 0
    assert {c["check"] for c in report["checks"]} >= {"ca", "pin", "management_key", "ra_grant", "state_directory"}
    assert all(c["outcome"] == "passed" for c in report["checks"])
    first = report["checks"][0]
    assert set(first) == {"check", "slot", "title", "outcome", "message", "next_step", "code"}
    assert sent(card, 0x47) == sent(card, 0xDB) == 0
    r.assert_no_secret()


def test_check_without_a_pin_skips_and_names_what_needs_it(run: Run) -> None:
    r = run("renew", "--check")
    assert r.code == 0, r.err
    assert "skipped  PIN: No PIN was given" in r.out and "Renewal grant (9A)" in r.out
    assert "No check failed: " in r.out


def test_check_with_a_ca_that_cannot_be_opened_reports_it_and_exits_14(run: Run) -> None:
    run.issuer = IssuerUnavailable("embedded CA at /srv/ca cannot be opened (No such file or directory)")
    r = run("renew", "--check", "--pin-stdin", stdin=PIN + "\n")
    assert r.code == 14, r.out + r.err
    assert "FAILED   Certificate authority: Embedded CA at /srv/ca cannot be opened" in r.out
    assert "Next step: " in r.out and "Some checks failed" in r.out


def test_check_with_a_wrong_management_key_exits_14_json(run: Run, card: SoftPivCard) -> None:
    card.state.management_key = "0F0E0D0C0B0A09080706050403020100F0E0D0C0B0A09080"
    r = run("renew", "--check", "--json", "--pin-stdin", stdin=PIN + "\n")
    assert r.code == 14 and r.json["outcome"] == "failed" and r.json["exit_code"] == 14
    failed = [c for c in r.json["checks"] if c["outcome"] == "failed"]
    assert [(c["check"], c["code"]) for c in failed] == [("management_key", "MGMTKEY")]
    assert failed[0]["next_step"]


def test_check_with_one_try_left_sends_no_pin_without_allow_last_pin_try(run: Run, card: SoftPivCard) -> None:
    card.state.pin_retries = 1
    r = run("renew", "--check", "--pin-stdin", stdin=f"{WRONG}\n")
    assert r.code == 0 and "skipped  PIN: Only 1 PIN try is left" in r.out
    assert card.state.pin_retries == 1
    r = run("renew", "--check", "--pin-stdin", "--allow-last-pin-try", stdin=PIN + "\n")
    assert r.code == 0 and "passed   PIN: Accepted." in r.out and card.state.pin_retries == 3


# -- change-pin ------------------------------------------------------------------------------------
def test_change_pin_from_stdin_lines(run: Run, card: SoftPivCard) -> None:
    r = run("change-pin", "--pin-stdin", stdin=f"{PIN}\n{NEW_PIN}\n{NEW_PIN}\n")
    assert r.code == 0, r.err
    assert r.out.strip() == "Your passcode (PIN) has been changed. Use the new PIN from now on."
    assert card.state.pin == NEW_PIN
    assert audit_records()[-1]["event"] == "change_pin" and audit_records()[-1]["outcome"] == "changed"
    r.assert_no_secret()


def test_change_pin_json(run: Run, card: SoftPivCard) -> None:
    r = run("change-pin", "--pin-stdin", "--json", stdin=f"{PIN}\n{NEW_PIN}\n{NEW_PIN}\n")
    assert r.code == 0
    assert r.json == {"outcome": "changed", "reader": "Virtual card", "card_guid": r.json["card_guid"],
                      "title": "Your passcode (PIN) has been changed", "message": "Use the new PIN from now on.",
                      "exit_code": 0}
    assert r.json["card_guid"]


def test_change_pin_wrong_pin_shows_the_tries_left(run: Run, card: SoftPivCard) -> None:
    r = run("change-pin", "--pin-stdin", "--json", stdin=f"{WRONG}\n{NEW_PIN}\n{NEW_PIN}\n")
    assert r.code == 4
    assert r.json["error"]["code"] == "PIN" and "2 tries left" in r.json["error"]["message"]
    assert card.state.pin == PIN and card.state.pin_retries == 2
    assert audit_records()[-1]["outcome"] == "wrong_pin"
    r.assert_no_secret()


@pytest.mark.parametrize("lines,code", [(f"{PIN}\n{NEW_PIN}\n11111111\n", "PIN-MISMATCH"),
                                        (f"{PIN}\n12345\n12345\n", "PINFORMAT")])
def test_change_pin_refuses_a_bad_new_pin_before_sending(run: Run, card: SoftPivCard, lines: str, code: str) -> None:
    r = run("change-pin", "--pin-stdin", "--json", stdin=lines)
    assert r.code == 4 and r.json["error"]["code"] == code
    assert sent(card, 0x24) == 0 and card.state.pin_retries == 3
    r.assert_no_secret()


def test_change_pin_last_try_guard(run: Run, card: SoftPivCard) -> None:
    card.state.pin_retries = 1
    r = run("change-pin", "--pin-stdin", "--json", stdin=f"{PIN}\n{NEW_PIN}\n{NEW_PIN}\n")
    assert r.code == 4 and r.json["error"]["code"] == "PIN-LAST-TRY"
    assert sent(card, 0x24) == 0 and card.state.pin_retries == 1
    assert audit_records()[-1]["outcome"] == "refused" and audit_records()[-1]["error_code"] == "PIN-LAST-TRY"
    r = run("change-pin", "--pin-stdin", "--last-try", stdin=f"{PIN}\n{NEW_PIN}\n{NEW_PIN}\n")
    assert r.code == 0 and card.state.pin == NEW_PIN


def test_change_pin_on_a_blocked_card_asks_nothing(run: Run, card: SoftPivCard) -> None:
    card.state.pin_retries = 0
    r = run("change-pin", "--pin-stdin")
    assert r.code == 4 and "The PIN is blocked" in r.err and "Contact" in r.err
    assert sent(card, 0x24) == 0


def test_change_pin_needs_a_terminal_or_pin_stdin(run: Run) -> None:
    r = run("change-pin")
    assert r.code == 2 and "--pin-stdin" in r.err
    r = run("change-pin", "--pin-stdin", stdin=f"{PIN}\n{NEW_PIN}\n")
    assert r.code == 2 and "three lines" in r.err


# -- unblock ---------------------------------------------------------------------------------------
def test_unblock_is_refused_unless_allowed(run: Run, card: SoftPivCard, tmp_path: Path) -> None:
    card.state.pin_retries = 0
    r = run("unblock", "--config", unlock_config(tmp_path, allow=False), "--pin-stdin", "--json",
            stdin=f"{PUK}\n{NEW_PIN}\n{NEW_PIN}\n")
    assert r.code == 11 and r.json["error"]["code"] == "UNLOCK-NOT-ALLOWED"
    assert "ui.allow_unlock" in r.json["error"]["message"] and card.state.pin_retries == 0
    assert sent(card, 0x2C) == 0
    assert audit_records()[-1]["event"] == "unlock_card" and audit_records()[-1]["outcome"] == "refused"


def test_unblock_with_the_puk_sets_a_new_pin(run: Run, card: SoftPivCard, tmp_path: Path) -> None:
    card.state.pin_retries = 0
    r = run("unblock", "--config", unlock_config(tmp_path), "--pin-stdin", "--json",
            stdin=f"{PUK}\n{NEW_PIN}\n{NEW_PIN}\n")
    assert r.code == 0 and r.json["outcome"] == "unlocked", r.out + r.err
    assert card.state.pin == NEW_PIN and card.state.pin_retries == 3
    assert audit_records()[-1]["event"] == "unlock_card" and audit_records()[-1]["outcome"] == "changed"
    r.assert_no_secret()


def test_unblock_wrong_puk_names_the_puk(run: Run, card: SoftPivCard, tmp_path: Path) -> None:
    card.state.pin_retries = 0
    r = run("unblock", "--config", unlock_config(tmp_path), "--pin-stdin", stdin=f"11111111\n{NEW_PIN}\n{NEW_PIN}\n")
    assert r.code == 4 and "Wrong PUK: The PUK was not accepted. 2 tries left." in r.err
    assert audit_records()[-1]["outcome"] == "wrong_puk" and card.state.puk_retries == 2
    r.assert_no_secret()


def test_unblock_last_puk_try_guard_then_a_blocked_puk(run: Run, card: SoftPivCard, tmp_path: Path) -> None:
    card.state.yubico_version = [5, 7, 1]  # a card that tells the PUK tries left (GET METADATA)
    card.state.pin_retries, card.state.puk_retries = 0, 1
    lines = f"11111111\n{NEW_PIN}\n{NEW_PIN}\n"
    r = run("unblock", "--config", unlock_config(tmp_path), "--pin-stdin", "--json", stdin=lines)
    assert r.code == 4 and r.json["error"]["code"] == "PIN-LAST-TRY" and "PUK" in r.json["error"]["message"]
    assert sent(card, 0x2C) == 0 and card.state.puk_retries == 1
    r = run("unblock", "--config", unlock_config(tmp_path), "--pin-stdin", "--last-try", stdin=lines)
    assert r.code == 4 and "The PUK is blocked: this card can no longer be unlocked here." in r.err
    r = run("unblock", "--config", unlock_config(tmp_path), "--pin-stdin", stdin=f"{PUK}\n{NEW_PIN}\n{NEW_PIN}\n")
    assert r.code == 4 and "The PUK is blocked" in r.err and sent(card, 0x2C) == 1  # the last run sent nothing


def test_unblock_ca_is_never_needed(run: Run, card: SoftPivCard, tmp_path: Path) -> None:
    run.issuer = IssuerUnavailable("not reachable")
    card.state.pin_retries = 0
    r = run("unblock", "--config", unlock_config(tmp_path), "--pin-stdin", stdin=f"{PUK}\n{NEW_PIN}\n{NEW_PIN}\n")
    assert r.code == 0, r.err


@pytest.mark.parametrize("typed", ["\x1b[A12345", "12345\t6", "123 456", "abcdef", "12345\x006"])
def test_change_pin_refuses_what_is_not_a_pin_character_unsent(run: Run, card: SoftPivCard, typed: str) -> None:
    """Finding F-3 (tester, 05:50): an arrow key, a tab, a space or letters reached the card and spent a try."""
    for lines in (f"{typed}\n{NEW_PIN}\n{NEW_PIN}\n", f"{PIN}\n{typed}\n{typed}\n"):
        r = run("change-pin", "--pin-stdin", "--json", stdin=lines)
        assert r.code == 4 and r.json["error"]["code"] == "PINFORMAT", r.out
        assert "No try was used" in r.json["error"]["next_step"]
    assert sent(card, 0x24) == 0 and card.state.pin_retries == 3


def test_unblock_refuses_a_puk_with_other_characters_unsent(run: Run, card: SoftPivCard, tmp_path: Path) -> None:
    card.state.pin_retries = 0
    r = run("unblock", "--config", unlock_config(tmp_path), "--pin-stdin", stdin=f"1234567\x1b\n{NEW_PIN}\n{NEW_PIN}\n")
    assert r.code == 4 and "the PUK holds a character a PIN cannot contain" in r.err and sent(card, 0x2C) == 0


def test_a_crlf_line_end_is_still_a_line_end(run: Run, card: SoftPivCard) -> None:
    r = run("change-pin", "--pin-stdin", stdin=f"{PIN}\r\n{NEW_PIN}\r\n{NEW_PIN}\r\n")
    assert r.code == 0 and card.state.pin == NEW_PIN


def test_check_refuses_a_pin_with_other_characters_unsent(run: Run, card: SoftPivCard) -> None:
    r = run("renew", "--check", "--pin-stdin", "--json", stdin="\x1b[A12345\n")
    assert r.code == 4 and r.json["error"]["code"] == "PINFORMAT" and card.state.pin_retries == 3
    assert all(not (apdu[1] == 0x20 and len(apdu) > 5) for apdu, _ in card.trace)


@pytest.mark.parametrize("argv", [("change-pin", "--pin-stdin"), ("unblock", "--pin-stdin")])
def test_a_pkcs11_token_configuration_is_refused_and_no_card_is_touched(run: Run, card: SoftPivCard,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      argv: tuple[str, ...]) -> None:
    """Findings F-13 / F-26 (tester): with card.interface = "pkcs11", change-pin changed the PIN of the PIV card in
    the PC/SC reader. (renew --check, refused here before, now checks the token: tests/pkcs11/test_token_check.py.)"""
    import dataclasses

    from card.config import TokenSettings

    token = dataclasses.replace(Settings(), allow_unlock=True, token=TokenSettings(interface="pkcs11"))
    monkeypatch.setattr("tui.cli.output.load_settings", lambda *a, **k: token)
    r = run(*argv, stdin=f"{PIN}\n{NEW_PIN}\n{NEW_PIN}\n")
    assert r.code == 2 and "PKCS#11 token" in r.err, r.err
    assert card.trace == [] and card.state.pin == PIN
