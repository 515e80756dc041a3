"""``cardrenew status`` through Yubico's libykcs11 over our card (issue 14): a PKCS#11 module over a
PIV card is named as the token it says it is, its certificates by their labels, and — its keys
living in PIV slots — renewed in PIV order ("Do not remove your card."). Judged by OpenSC reading
the same certificates through its own PIV driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from card.words import PIV_ORDER, SIDE_BY_SIDE
from tests.integration.conftest import CARDRENEW
from tests.ykcs11 import judge
from tests.ykcs11.pcscd import YKCS11, YkPcscd

pytestmark = pytest.mark.pcscd


def config(tmp_path: Path, ca_dir: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[issuer]\ntype = "local"\ndirectory = "{ca_dir}"\n\n[card]\ninterface = "pkcs11"\n'
                    f'module = "{YKCS11}"\n', encoding="utf-8")
    return path


def test_status_through_ykcs11_names_the_yubikey_token_and_the_piv_order(
        yk_pcscd: YkPcscd, yk_card, tmp_path: Path, ca_dir: Path) -> None:  # type: ignore[no-untyped-def]
    yk_card()
    path = config(tmp_path, ca_dir)
    done = yk_pcscd.run([*CARDRENEW, "status", "--json", "--config", str(path)], XDG_STATE_HOME=str(tmp_path / "s"))
    assert done.returncode == 10, done.stdout + done.stderr  # due in 30 days
    out = json.loads(done.stdout)
    token = out["token"]
    assert token["interface"] == "pkcs11" and token["manufacturer"].startswith("Yubico")
    assert token["label"].startswith("YubiKey PIV #") and token["renewal_mode"] == "piv_order"
    assert [s["slot"] for s in out["slots"]] == ["01", "02"]  # CKA_ID 01 = 9A, 02 = 9C
    assert all("Certificate for" in s["label"] for s in out["slots"])
    for s in out["slots"]:  # the judge: OpenSC's PIV driver reads the same certificates
        assert s["sha256"] == judge.read_certificate_opensc(yk_pcscd, s["slot"]).fingerprint(hashes.SHA256()).hex()
    text = yk_pcscd.run([*CARDRENEW, "status", "--config", str(path)], XDG_STATE_HOME=str(tmp_path / "s")).stdout
    assert f"Renewal: In place — {PIV_ORDER}" in text and SIDE_BY_SIDE not in text
    assert "Token:   YubiKey PIV #" in text
