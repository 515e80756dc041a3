"""What the holder sees while a side-by-side PKCS#11 token (SoftHSM2) is renewed, and when it cannot
be (tester F-24, F-19): the CLI's progress lines name the key as ``[9A]`` does for a PIV slot; the
TUI's *Write Certificates* shows one row per key (label, Key ID, old expiry, Pending → Writing →
Done, time, new expiry), "Certificate n of 2 renewed" and the side-by-side words; a token on
read-only storage gets a next step that follows the cause. The token is judged by ``pkcs11-tool``."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from card.words import SIDE_BY_SIDE
from tests.pkcs11 import judge
from tests.pkcs11.beside_faults import build_shim, shim_env
from tests.pkcs11.softhsm import SoftHsm
from tests.pkcs11.test_token_ui import config, judge_renewed, tui_backend, update_to_pin_again
from tests.tui.conftest import screen_text, wait_for
from tui.cli import main
from tui.screens.dialogs import format_date

pytestmark = pytest.mark.skipif(not Path("/usr/lib/softhsm/libsofthsm2.so").is_file(), reason="softhsm2 is not installed")
ROOT = Path(__file__).parents[2]
LABELS = {"01": "Authentication certificate", "02": "Signature certificate"}


@pytest.fixture(autouse=True)
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def test_cli_progress_lines_of_a_token_renewal_name_the_key(
        softhsm: SoftHsm, ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(softhsm.pin + "\n"))
    assert main(["renew", "--yes", "--pin-stdin", "--config", str(config(tmp_path, softhsm, ca_dir))]) == 0
    steps = [line for line in capsys.readouterr().err.splitlines() if line.startswith("  ")]
    named = {label: [line.removeprefix(f"  [{label}] ") for line in steps if line.startswith(f"  [{label}] ")]
             for label in LABELS.values()}
    for label, said in named.items():  # every step of each key, under its label
        assert said[:1] == ["Pending"] and said[-1:] == ["Done"], (label, steps)
        assert {"Generating a new key on the card", "Writing", "Test signature"} <= set(said), (label, steps)
    unnamed = [line for line in steps if not line.startswith("  [")]
    assert unnamed == ["  Checking the card"], steps  # only the whole token's step has no key name
    judge_renewed(softhsm, {b"\x01", b"\x02"})


async def test_tui_write_certificates_shows_each_token_key_and_n_of_2(
        softhsm: SoftHsm, ca_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tui.app import make_app
    from tui.screens import MessageDialog, NextDialog, WriteCertificatesScreen

    shown: dict[str, list[str]] = {}  # every status the table showed, per row
    update_cell = DataTable.update_cell

    def seen(table, row_key, column_key, value, **kw):  # type: ignore[no-untyped-def]
        if table.id == "certificate-table" and column_key == "status":
            said = shown.setdefault(str(row_key), [])
            if not said or said[-1] != str(value):
                said.append(str(value))
        return update_cell(table, row_key, column_key, value, **kw)

    monkeypatch.setattr(DataTable, "update_cell", seen)
    old_expiry = {c.key_id.hex().upper(): format_date(c.certificate.not_valid_after_utc) for c in softhsm.certificates}
    app = make_app(tui_backend(config(tmp_path, softhsm, ca_dir)))
    async with app.run_test(size=(120, 36)) as pilot:
        await update_to_pin_again(pilot, softhsm)
        await pilot.press(*softhsm.pin, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NextDialog), 120)
        writing = next(s for s in app.screen_stack if isinstance(s, WriteCertificatesScreen))
        table = writing.certificate_table

        def row(key: str) -> list[str]:
            return [str(cell) for cell in table.get_row(key)]

        assert "Certificate 1 of 2 renewed" in screen_text(app)
        assert [str(c.label) for c in table.columns.values()] == ["Certificate", "Key ID", "Old expiry", "Status",
                                                                  "Time", "New expiry"]
        assert row("01")[:4] == [LABELS["01"], "01", old_expiry["01"], "Done"] and row("01")[4].endswith(" s")
        assert row("02") == [LABELS["02"], "02", old_expiry["02"], "Pending", "", ""]
        first_new = row("01")[5]
        assert SIDE_BY_SIDE in str(writing.query_one("#do-not-remove", Static).render())
        assert "Do not remove" not in screen_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NextDialog) and "Certificate 2 of 2" in screen_text(app), 120)
        assert row("02")[:4] == [LABELS["02"], "02", old_expiry["02"], "Done"] and row("02")[4].endswith(" s")
        new_expiry = {row(k)[0]: row(k)[5] for k in LABELS}
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and app.screen.id == "confirmation-dialog")
    assert shown == {"01": ["Pending", "Writing", "Done"], "02": ["Pending", "Writing", "Done"]}
    pairs = judge_renewed(softhsm, {b"\x01", b"\x02"})  # pkcs11-tool: the new certificates' expiry was shown
    assert new_expiry == {label: format_date(cert.not_valid_after_utc) for label, cert in pairs.values()}
    assert first_new == new_expiry[LABELS["01"]]


def _can_mount_read_only() -> bool:
    return (os.geteuid() == 0 and shutil.which("unshare") is not None
            and subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0)


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs root and unshare -m for a read-only bind mount")
def test_a_token_on_read_only_storage_gets_a_next_step_that_follows_the_cause(
        softhsm: SoftHsm, ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tester F-19: SoftHSM2 on read-only storage answers C_GenerateKeyPair with CKR_GENERAL_ERROR; the
    next step said "Re-insert your card". The real ``cardrenew renew`` runs in a mount namespace where
    the token directory is a read-only bind mount (as the tester did); afterwards, writable again,
    the next run finishes."""
    path, tokens = config(tmp_path, softhsm, ca_dir), softhsm.token_dir
    before = judge.objects(softhsm)
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{tokens}" "{tokens}" && exec "$0" "$@"',
         sys.executable, "-m", "tui", "renew", "--yes", "--pin-stdin", "--json", "--config", str(path)],
        input=softhsm.pin + "\n", env={**softhsm.env(), "XDG_STATE_HOME": str(tmp_path / "state")},
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    out = json.loads(result.stdout)
    assert out["exit_code"] == result.returncode == 13, result.stderr
    stopped = next(s for s in out["slots"] if s["error"])
    assert "the token could not store the change (C_GenerateKeyPair: CKR_GENERAL_ERROR)" in stopped["error"]
    next_step = out["next_step"]
    assert "Re-insert" not in next_step and "re-insert" not in next_step
    assert next_step.startswith("The token's storage is read-only or full: ask your IT support to make it writable")
    assert "then run `cardrenew renew` again" in next_step
    assert judge.objects(softhsm) == before  # nothing on the token changed
    monkeypatch.setattr("sys.stdin", io.StringIO(softhsm.pin + "\n"))
    assert main(["renew", "--yes", "--pin-stdin", "--config", str(path)]) == 0  # writable again: it finishes
    judge_renewed(softhsm, {b"\x01", b"\x02"})


async def test_tui_a_token_that_cannot_store_the_change_says_so_and_keeps_the_holder_logged_on(
        softhsm: SoftHsm, ca_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tester F-19 in the TUI: C_GenerateKeyPair answered CKR_GENERAL_ERROR — what SoftHSM2 answers on
    read-only storage (the test above) — here injected at the PKCS#11 boundary by faultshim.c (the
    pytest process cannot take a mount namespace of its own). The dialog and the outcome pane say the
    storage's next step, never "the card was removed"; the token never left, so the holder stays logged
    on; nothing on the token changed."""
    from tui.app import make_app
    from tui.screens import CardScreen, CompletedWithErrorsScreen

    shim = build_shim(tmp_path)
    for name, value in shim_env(fault="general-before:1").items():
        monkeypatch.setenv(name, value)
    before = judge.objects(softhsm)
    path = config(tmp_path, dataclasses.replace(softhsm, module=shim), ca_dir)
    app = make_app(tui_backend(path))
    async with app.run_test(size=(120, 36)) as pilot:
        await update_to_pin_again(pilot, softhsm)
        await pilot.press(*softhsm.pin, "enter")
        await wait_for(pilot, lambda: getattr(app.screen, "id", None) == "issuance-error-dialog", 120)
        said = " ".join(screen_text(app).split())
        assert "The token could not store the change" in said and "CKR_GENERAL_ERROR" in said
        assert ("Next step: The token's storage is read-only or full: ask your IT support to make it writable "
                "(or to free space on it), then select Update My Card again") in said
        assert "removed" not in said.lower() and "re-insert" not in said.lower()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CompletedWithErrorsScreen))
        step = str(app.screen.query_one("#next-step", Static).render())
        assert step.startswith("Next step: The token's storage is read-only or full") and "removed" not in step
        await pilot.press("c")  # Back to Card tab: still logged on (the token never left its reader)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        assert "The token's storage is read-only or full" in " ".join(screen_text(app).split())
    assert judge.objects(softhsm) == before
