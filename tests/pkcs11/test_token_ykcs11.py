"""Pkcs11Token on a module that talks to a card: Yubico's libykcs11 over our PIV emulator through
the ykcs11 tests' own pcscd (tests/ykcs11/pcscd.py). What SoftHSM2 cannot show is shown here on a
real module: the PIN's last try and lock from CKF_USER_PIN_FINAL_TRY / CKF_USER_PIN_LOCKED and
CKR_PIN_LOCKED, the security officer's login with the management key in hex, a PIN-always key
(9C, CKA_ALWAYS_AUTHENTICATE) signing under it, and the PIV order (no delete). The card's own state
file and OpenSC judge what happened."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from card.emulator.state import CardState
from card.piv import KeyType
from tests.ykcs11 import judge as yk_judge
from tests.ykcs11.conftest import yk_card, yk_pcscd  # noqa: F401 - the ykcs11 fixtures, used by name
from tests.ykcs11.pcscd import YkPcscd

REPO = Path(__file__).resolve().parents[2]


def _child(pcscd: YkPcscd, *args: str) -> dict[str, Any]:
    done = pcscd.run([sys.executable, "-m", "tests.pkcs11.ykcs11_child", *args], cwd=REPO, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_wrong_pins_say_the_tries_the_token_gives_then_the_card_is_blocked(yk_pcscd: YkPcscd, yk_card) -> None:  # type: ignore[no-untyped-def]
    card = yk_card()
    out = _child(yk_pcscd, "pins")
    assert out["before"] is None  # 3 tries: PKCS#11 says nothing
    first, second, third, right = out["steps"]
    assert (first["type"], first["message"], first["tries_left"]) == (
        "InvalidPinError", "The PIN was not accepted. The token says few tries are left.", None)  # 2 left: COUNT_LOW
    assert (second["type"], second["message"], second["left"], second["tries_left"]) == (
        "InvalidPinError", "The PIN was not accepted. 1 try left before your card is blocked.", 1, 1)  # FINAL_TRY
    assert (third["type"], third["message"], third["tries_left"]) == (
        "PinBlockedError", "the token says the PIN is now locked (CKF_USER_PIN_LOCKED)", 0)
    assert (right["type"], right["message"]) == ("PinBlockedError", "the token says the PIN is locked (CKR_PIN_LOCKED)")
    assert json.loads(card.state.read_text())["pin_retries"] == 0  # the card itself is blocked


@pytest.mark.parametrize("key_type", [KeyType.RSA2048, KeyType.ECCP256], ids=lambda k: k.name)
def test_a_piv_order_renewal_through_ykcs11(yk_pcscd: YkPcscd, yk_card, ca_dir: Path, key_type: KeyType) -> None:  # type: ignore[no-untyped-def]
    card = yk_card(key_type=KeyType.RSA2048)
    out = _child(yk_pcscd, "renew", key_type.name, str(ca_dir))
    assert out["info"] == ["Yubico (www.yubico.com)", False]
    assert {"RSA2048", "ECCP256"} <= set(out["key_types"])
    assert [c[:2] for c in out["certificates"]] == [["01", "9A"], ["02", "9C"]]
    assert out["9c_verifies"] and out["written"] and out["9a_verifies"]
    assert out["delete"]["type"] == "NotSupportedError"
    written = x509.load_der_x509_certificate(bytes.fromhex(out["cert_der"]))
    assert yk_judge.read_certificate_opensc(yk_pcscd, "01") == written  # OpenSC reads what we wrote
    assert CardState.load(card.state).keys["9A"].key_type == int(key_type)  # the card holds the new key
    print(f"\nlibykcs11 {key_type.name}: generate + write certificate + test signature = "
          f"{out['calls_generate_write_sign']} PKCS#11 calls")
