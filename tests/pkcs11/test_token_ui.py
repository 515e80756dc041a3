"""A PKCS#11 token is used from the CLI and the TUI like a PIV card (issue 14): ``cardrenew status``
(text and ``--json``) and the logon pane / Card tab on a real SoftHSM2 token name the token, list its
certificates by label and say which renewal mode applies, in the same words; the keys are chosen by
``[card] keys``; a wrong PIN's words. What the token holds is judged by ``pkcs11-tool``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from textual.widgets import Input

from card.config import load_settings
from card.words import PIV_ORDER, SIDE_BY_SIDE
from tests.pkcs11 import judge
from tests.pkcs11.softhsm import TOKEN_LABEL, SoftHsm
from tests.tui.conftest import screen_text, wait_for
from tui.cli import EXIT_NOT_DUE, main

pytestmark = pytest.mark.skipif(not Path("/usr/lib/softhsm/libsofthsm2.so").is_file(), reason="softhsm2 is not installed")


def config(tmp_path: Path, token: SoftHsm, ca_dir: Path, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[issuer]\ntype = "local"\ndirectory = "{ca_dir}"\n\n[card]\ninterface = "pkcs11"\n'
                    f'module = "{token.module}"\ntoken_label = "{token.label}"\n{extra}', encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def status_json(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main(["status", "--json", "--config", str(path)])
    return code, json.loads(capsys.readouterr().out)

async def update_to_pin_again(pilot, token: SoftHsm) -> None:  # type: ignore[no-untyped-def]
    """The real app on ``token``: log on, Card tab (a key due), Update My Card, OK: at *PIN again*."""
    from tui.screens import CardScreen, LogonScreen, MessageDialog, PinDialog

    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
    app.screen.query_one("#pin-input", Input).focus()
    await pilot.press(*token.pin, "enter")
    await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers
                   and "Due for renewal" in screen_text(app))
    await pilot.press("u")
    await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))



def test_status_json_names_the_token_its_certificates_by_label_and_side_by_side(
        softhsm: SoftHsm, ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = status_json(capsys, config(tmp_path, softhsm, ca_dir))
    assert code == out["exit_code"] == EXIT_NOT_DUE  # both certificates expire in 30 days
    token = out["token"]
    assert token["interface"] == "pkcs11" and token["label"] == TOKEN_LABEL
    assert token["manufacturer"] == "SoftHSM project" and token["model"].startswith("SoftHSM")
    assert token["serial"] and token["name"] == f"{TOKEN_LABEL} (SoftHSM project {token['model']}, serial {token['serial']})"
    assert token["renewal_mode"] == "side_by_side"
    # the judge: pkcs11-tool lists the same certificates, by label and CKA_ID, each with its private key
    listed = judge.objects(softhsm)
    keys = {o.key_id for o in listed if o.kind == "Private Key"}
    by_tool = {o.key_id.hex().upper(): o.label for o in listed if o.kind == "Certificate" and o.key_id in keys}
    assert {s["slot"]: s["label"] for s in out["slots"]} == by_tool == {"01": "Authentication certificate",
                                                                       "02": "Signature certificate"}
    for s in out["slots"]:
        tool_cert = judge.read_certificate(softhsm, bytes.fromhex(s["slot"]))
        assert s["sha256"] == tool_cert.fingerprint(hashes.SHA256()).hex()
        assert s["state"] == "due"


def test_status_text_says_the_token_and_the_mode(softhsm: SoftHsm, ca_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--config", str(config(tmp_path, softhsm, ca_dir))]) == EXIT_NOT_DUE
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(f"Token:   {TOKEN_LABEL} (SoftHSM project SoftHSM")
    assert f"Renewal: Side by side — {SIDE_BY_SIDE}" in lines
    assert PIV_ORDER not in "\n".join(lines)
    assert "PIN:     not blocked (the token does not say how many tries are left)" in lines  # never "verified"
    assert any(line.startswith("  Authentication certificate (01): due for renewal") for line in lines)
    assert any(line.startswith("  Signature certificate (02): due for renewal") for line in lines)


@pytest.mark.parametrize("keys,shown", [('keys = [{ label = "Signature certificate" }]', ["02"]),
                                        ('keys = [{ id = "01" }]', ["01"]),
                                        ('keys = [{ id = "0x02" }, { label = "Authentication certificate" }]', ["01", "02"]),
                                        ('keys = [{ label = "no such certificate" }]', [])])
def test_the_keys_to_renew_are_chosen_by_label_or_cka_id(softhsm: SoftHsm, ca_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str], keys: str,
                                                         shown: list[str]) -> None:
    _, out = status_json(capsys, config(tmp_path, softhsm, ca_dir, keys + "\n"))
    assert [s["slot"] for s in out["slots"]] == shown
    if not shown:
        assert out["update"] == "nothing_to_renew"


def test_a_token_label_no_token_has_is_said_with_the_tokens_there(softhsm: SoftHsm, ca_dir: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path, dataclasses.replace(softhsm, label="someone else's token"), ca_dir)
    code, out = status_json(capsys, path)
    assert code == out["exit_code"] == 3  # no card
    assert "someone else's token" in out["error"]["message"] and TOKEN_LABEL in out["error"]["message"]


# -- the TUI on the same token ---------------------------------------------------------------------
def tui_backend(path: Path):  # type: ignore[no-untyped-def]
    from card.backend import card_backend

    return card_backend(load_settings(path), wait_for_card=True)


async def test_the_tui_logs_on_with_the_tokens_pin_and_shows_labels_and_side_by_side(
        softhsm: SoftHsm, ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tui.app import make_app
    from tui.screens import CardScreen, LogonScreen

    path = config(tmp_path, softhsm, ca_dir)
    assert main(["status", "--config", str(path)]) == EXIT_NOT_DUE
    cli_mode = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Renewal:"))
    app = make_app(tui_backend(path))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and "Card detected" in screen_text(app))
        text = screen_text(app)
        assert f"Card detected: {TOKEN_LABEL} (SoftHSM project SoftHSM" in text
        assert f"Renewal side by side: {SIDE_BY_SIDE}" in text and "Alex Example" in text
        # a wrong PIN: the words, the PIN field emptied, still on the logon pane
        app.screen.query_one("#pin-input", Input).focus()
        await pilot.press(*"654321", "enter")
        await wait_for(pilot, lambda: "Wrong PIN" in screen_text(app))
        assert "Wrong PIN. The token says few tries are left." in screen_text(app)
        assert app.screen.query_one("#pin-input", Input).value == ""
        await pilot.press(*softhsm.pin, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers
                       and "Authentication certificate" in screen_text(app))
        text = screen_text(app)
        assert "Token" in text and "Card GUID" not in text
        assert not app.screen.query_one("#change-pin-button").display  # tester F-16: not offered on a token
        assert app.screen.check_action("change_pin", ()) is False
        assert f"Side by side: {SIDE_BY_SIDE}" in text and PIV_ORDER not in text
        assert cli_mode.removeprefix("Renewal: ").split(" — ")[1] in text  # the CLI's words, the same
        for label in ("Authentication certificate", "Signature certificate"):
            assert label in text
        await pilot.press("d")  # the Certificates tab: the labels (sorted), with their CKA_IDs
        await wait_for(pilot, lambda: "Authentication certificate (01) — Due for renewal" in screen_text(app))
    # nothing was changed by looking: pkcs11-tool still finds both keys working with their certificates
    assert set(judge.working_pairs(softhsm)) == {b"\x01", b"\x02"}


# -- renewal through the CLI and the TUI, judged by pkcs11-tool ------------------------------------
def judge_renewed(token: SoftHsm, old_ids: set[bytes]) -> dict[bytes, tuple[str, object]]:
    """pkcs11-tool: both labels on new keys whose certificates verify their signatures; old keys gone."""
    pairs = judge.working_pairs(token)
    assert sorted(label for label, _ in pairs.values()) == ["Authentication certificate", "Signature certificate"]
    assert not set(pairs) & old_ids and not judge.certificates_without_key(token)
    assert not [o for o in judge.objects(token) if o.key_id in old_ids]  # old_keys = "delete": every old object gone
    return pairs  # type: ignore[return-value]


def test_cli_renew_on_softhsm2_side_by_side(softhsm: SoftHsm, ca_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(softhsm.pin + "\n"))
    code = main(["renew", "--yes", "--pin-stdin", "--json", "--config", str(config(tmp_path, softhsm, ca_dir))])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert code == out["exit_code"] == 0, captured
    assert out["outcome"] == "renewed" and [s["renewed"] for s in out["slots"]] == [True, True]
    assert out["token"]["renewal_mode"] == "side_by_side" and out["token"]["label"] == TOKEN_LABEL
    assert {s["label"] for s in out["slots"]} == {"Authentication certificate", "Signature certificate"}
    pairs = judge_renewed(softhsm, {b"\x01", b"\x02"})
    assert {f"{c.serial_number:X}" for _, c in pairs.values()} == {s["new_serial"] for s in out["slots"]}


def test_cli_renew_text_says_side_by_side_and_never_warns_of_a_piv_management_key(
        softhsm: SoftHsm, ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(softhsm.pin + "\n"))
    assert main(["renew", "--yes", "--pin-stdin", "--config", str(config(tmp_path, softhsm, ca_dir))]) == 0
    captured = capsys.readouterr()
    assert f"Renewal side by side: {SIDE_BY_SIDE}" in captured.err
    assert "management key" not in captured.err  # a SoftHSM2 token has none: the PIV warning would mislead
    assert "Authentication certificate (01): renewed" in captured.out


async def test_tui_update_my_card_on_softhsm2_to_done(softhsm: SoftHsm, ca_dir: Path, tmp_path: Path) -> None:
    from tui.app import make_app
    from textual.widgets import Static

    from tui.screens import CardScreen, MessageDialog, NextDialog, WriteCertificatesScreen

    app = make_app(tui_backend(config(tmp_path, softhsm, ca_dir)))
    async with app.run_test(size=(120, 36)) as pilot:
        await update_to_pin_again(pilot, softhsm)
        assert SIDE_BY_SIDE in screen_text(app) and "Do not remove" not in screen_text(app)
        await pilot.press(*softhsm.pin, "enter")
        # Write Certificates says the token's mode, never "Do not remove your Smartcard" (tester F-24).
        await wait_for(pilot, lambda: isinstance(app.screen, (WriteCertificatesScreen, NextDialog)), 60)
        writing = next(s for s in app.screen_stack if isinstance(s, WriteCertificatesScreen))
        shown = str(writing.query_one("#do-not-remove", Static).render())
        assert SIDE_BY_SIDE in shown and "Do not remove" not in shown
        while True:
            await wait_for(pilot, lambda: isinstance(app.screen, (NextDialog, MessageDialog)), 120)
            if isinstance(app.screen, MessageDialog):
                break
            dialog = app.screen
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is not dialog)
        assert app.screen.id == "confirmation-dialog"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and app.screen.renewed is not None
                       and "Valid" in screen_text(app))
        text = screen_text(app)
        assert "Your certificates have been renewed" in text
        assert "Authentication certificate" in text and "Signature certificate" in text
    judge_renewed(softhsm, {b"\x01", b"\x02"})


def test_an_interrupted_side_by_side_update_leaves_the_old_key_working_in_status(
        softhsm: SoftHsm, ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tester F-20: a side-by-side renewal stopped at GENERATE left the old key and certificate as they
    were; status said the old key "does not work … may have been replaced" and exited 13."""
    from card.certificates import fingerprint
    from card.journal import Journal, JournalStep, SlotJournal
    from card.renewal.model import slot_condition
    from card.service import CardSummary

    path = config(tmp_path, softhsm, ca_dir)
    from card.backend import card_backend

    backend = card_backend(load_settings(path), with_issuer=False)
    try:
        summary: CardSummary = backend.read_card().result()
    finally:
        backend.close()
    journal = Journal(summary.card_id or "x", interface="pkcs11")
    for s in summary.slots:
        assert s.certificate is not None
        journal.slots[s.name] = SlotJournal(s.name, fingerprint(s.certificate), step=JournalStep.GENERATING)
    stopped = dataclasses.replace(summary, pending_journal=journal)
    assert all(slot_condition(stopped, s, "the RA") is None for s in stopped.slots)  # the old keys still work

