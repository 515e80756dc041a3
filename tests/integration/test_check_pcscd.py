"""``cardrenew renew --check`` (issue 15) through real pcscd, vpcd and the served card: each failing
check — wrong management key, CA down, fingerprint mismatch, read-only state directory, card
expired, certificate too large — is reported with its code and next step (exit 14), and nothing on
the card changed: its keys and objects are as before, and the ``-vv`` APDU trace holds no GENERATE
(INS 47) and no PUT DATA (INS DB)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest

from card.piv import OBJECT_CHUID, build_chuid
from tests.integration.conftest import CARDRENEW, READER, ServedCard

pytestmark = pytest.mark.pcscd
PIN = "123456"
OTHER_KEY = "0F0E0D0C0B0A09080706050403020100F0E0D0C0B0A09080"
BASE_CONFIG = '[renewal]\nwindow_days = 90\n\n[issuer]\n{issuer}\n[management_key]\nsource = "default"\n{extra}'
LOCAL = 'type = "local"\ndirectory = "ca"\n'


def configure(workdir: Path, issuer: str = LOCAL, extra: str = "") -> None:
    (workdir / "config.toml").write_text(BASE_CONFIG.format(issuer=issuer, extra=extra))


def check(workdir: Path, env: dict[str, str] | None = None) -> tuple[int, dict, list[int], str]:  # type: ignore[type-arg]
    """``cardrenew -vv renew --check --json --pin-stdin``: (exit code, report, INS of every command, stderr)."""
    full_env = dict(os.environ, CARDRENEW_CONFIG=str(workdir / "config.toml"),
                    XDG_STATE_HOME=str(workdir / "xdg-state"), **(env or {}))
    out = subprocess.run(CARDRENEW + ["-vv", "renew", "--check", "--reader", READER, "--json", "--pin-stdin"],
                         input=PIN + "\n", capture_output=True, text=True, env=full_env, cwd=workdir, timeout=120)
    sent = [int(line.split("TRAFFIC > ", 1)[1].split()[1], 16) for line in out.stderr.splitlines()
            if "TRAFFIC > " in line]
    return out.returncode, json.loads(out.stdout), sent, out.stderr


def card_content(state: Path) -> dict:  # type: ignore[type-arg]
    raw = json.loads(state.read_text())
    return {key: raw[key] for key in ("keys", "objects", "management_key", "pin", "puk")}


def failed(report: dict) -> list[tuple[str, str | None, str | None]]:  # type: ignore[type-arg]
    return [(c["check"], c["slot"], c["code"]) for c in report["checks"] if c["outcome"] == "failed"]


def assert_nothing_changed(sent: list[int], state: Path, before: dict) -> None:  # type: ignore[type-arg]
    assert sent, "no APDU trace (-vv)"
    assert 0x47 not in sent and 0xDB not in sent, [hex(i) for i in sent]
    assert card_content(state) == before


def test_each_failing_check_through_pcscd_changes_nothing(serve_card, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    card = serve_card(key_type="ECCP256")
    before = card_content(card.state)
    configure(workdir)
    code, report, sent, err = check(workdir)
    assert code == 0 and report["outcome"] == "passed", err[-3000:]
    assert {c["check"] for c in report["checks"] if c["outcome"] == "passed"} >= {
        "card", "state_directory", "card_expiry", "certificates", "ca", "key_type", "certificate_size",
        "management_key", "pin", "ra_grant"}
    assert 0x20 in sent and 0x87 in sent  # VERIFY, GENERAL AUTHENTICATE: the real checks ran
    assert_nothing_changed(sent, card.state, before)

    cases = {
        "fingerprint mismatch": (dict(issuer=LOCAL + f'ca_fingerprint = "{"ab" * 32}"\n'), None, ("ca", None, "CA-PIN")),
        "CA down": (dict(issuer=f'type = "scep"\nurl = "http://127.0.0.1:9/scep"\nca_fingerprint = "{"cd" * 32}"\n'),
                    None, ("ca", None, "CA-DOWN")),
        "certificate too large": (dict(extra="\n[card]\nmax_certificate_bytes = 700\n"), None,
                                  ("certificate_size", "9A", "TOOLARGE")),
        "read-only state directory": ({}, {"CARDRENEW_TEST_WRITE_FAULT": "1:EROFS",
                                           "CARDRENEW_TEST_WRITE_FAULT_UNDER": str(workdir / "xdg-state")},
                                      ("state_directory", None, "STATEFILE")),
    }
    for name, (config, env, expected) in cases.items():
        configure(workdir, **config)
        code, report, sent, err = check(workdir, env)
        assert code == 14 and report["exit_code"] == 14, (name, err[-2000:])
        assert expected in failed(report), (name, failed(report))
        item = next(c for c in report["checks"] if (c["check"], c["slot"], c["code"]) == expected)
        assert item["next_step"], (name, item)
        assert_nothing_changed(sent, card.state, before)


def test_wrong_management_key_and_expired_card_are_both_reported(serve_card, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    card = serve_card(key_type="ECCP256", create_extra=["--management-key", OTHER_KEY])
    card.stop()  # give the card an expired CHUID, then serve it again
    state = json.loads(card.state.read_text())
    state["objects"][OBJECT_CHUID.hex().upper()] = build_chuid(
        os.urandom(16), dt.date.today() - dt.timedelta(days=2)).hex().upper()
    card.state.write_text(json.dumps(state))
    served = ServedCard(card.state)
    try:
        before = card_content(card.state)
        configure(workdir)
        code, report, sent, err = check(workdir)
        assert code == 14, err[-3000:]
        assert ("management_key", None, "MGMTKEY") in failed(report)
        assert ("card_expiry", None, "CARD-EXPIRED") in failed(report)
        expiry = next(c for c in report["checks"] if c["check"] == "card_expiry")
        assert "Registration Authority" in expiry["next_step"]
        assert_nothing_changed(sent, card.state, before)
    finally:
        served.stop()
