"""Yubico's libykcs11 2.2.0 reads, signs with, and writes our software PIV card through a real pcscd
(issue 14): what pkcs11-tool does on it, judged by OpenSC reading the card afterwards."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from card.emulator.card import state_digest
from card.emulator.state import CardState
from card.enrollment.local import LocalCA
from card.piv import KeyType
from tests.ykcs11 import judge
from tests.ykcs11.pcscd import OPENSC_PKCS11, YkPcscd

pytestmark = pytest.mark.pcscd

KEY_TYPES = [KeyType.RSA2048, KeyType.ECCP256]


def test_ykcs11_shows_our_card_as_a_yubikey_token_with_both_certificates(yk_pcscd: YkPcscd, yk_card, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    card = yk_card()
    state = CardState.load(card.state)
    slots = judge.ykcs11(yk_pcscd, "-L").stdout
    assert f"token label        : YubiKey PIV #{state.serial}" in slots
    assert "token manufacturer : Yubico" in slots
    assert judge.certificate_objects(yk_pcscd) == {"01": "DN: CN=Alex Example, O=Example Health Trust",
                                                   "02": "DN: CN=Alex Example, O=Example Health Trust"}
    for slot, key_id in (("9A", "01"), ("9C", "02")):
        stored = judge.read_certificate_ykcs11(yk_pcscd, key_id, tmp_path)
        assert stored == judge.read_certificate_opensc(yk_pcscd, key_id), slot


@pytest.mark.parametrize("key_type", KEY_TYPES, ids=lambda k: k.name)
def test_a_ykcs11_signature_with_9a_and_9c_verifies_with_the_certificate_opensc_reads(
        yk_pcscd: YkPcscd, yk_card, tmp_path: Path, key_type: KeyType) -> None:  # type: ignore[no-untyped-def]
    yk_card(key_type=key_type)
    for key_id in ("01", "02"):  # 02 = 9C: PIN always, pkcs11-tool's context-specific login
        message = os.urandom(48)
        signature = judge.sign(yk_pcscd, judge.YKCS11, key_id, message, tmp_path, ec_key=key_type != KeyType.RSA2048)
        certificate = judge.read_certificate_opensc(yk_pcscd, key_id)
        assert judge.verifies(certificate, message, signature), key_id
        assert not judge.verifies(certificate, message + b"x", signature)


def _certificate_for(ca: LocalCA, public_der: bytes, cn: str) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    key = serialization.load_der_public_key(public_der)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return ca.issue_initial(subject, key, "9A", now - dt.timedelta(minutes=1), now + dt.timedelta(days=365))  # type: ignore[arg-type]


@pytest.mark.parametrize("key_type", KEY_TYPES, ids=lambda k: k.name)
def test_ykcs11_generates_a_key_in_9a_and_writes_its_certificate_and_opensc_signs_with_them(
        yk_pcscd: YkPcscd, yk_card, ca: LocalCA, tmp_path: Path, key_type: KeyType) -> None:  # type: ignore[no-untyped-def]
    """The PIV-order renewal's card half through ykcs11: GENERATE in 9A (SO = management key),
    write the new certificate; OpenSC then lists it and its key signs what it verifies."""
    card = yk_card(key_type=KeyType.RSA2048)
    old_9a = judge.read_certificate_opensc(yk_pcscd, "01")
    spec = "rsa:2048" if key_type is KeyType.RSA2048 else "EC:prime256v1"
    judge.ykcs11(yk_pcscd, *judge.SO_LOGIN, "--keypairgen", "--id", "01", "--key-type", spec)
    public = tmp_path / "new-9a.pub.der"
    judge.ykcs11(yk_pcscd, "--read-object", "--type", "pubkey", "--id", "01", "-o", str(public))
    new_cert = _certificate_for(ca, public.read_bytes(), "Alex Example (renewed)")
    cert_file = tmp_path / "new-9a.der"
    cert_file.write_bytes(new_cert.public_bytes(serialization.Encoding.DER))
    judge.ykcs11(yk_pcscd, *judge.SO_LOGIN, "--write-object", str(cert_file), "--type", "cert", "--id", "01")

    assert judge.opensc_certificate_ids(yk_pcscd) >= {"01", "02"}
    read_back = judge.read_certificate_opensc(yk_pcscd, "01")
    assert read_back == new_cert and read_back != old_9a
    assert judge.public_key_der(read_back) == judge.spki(public.read_bytes())  # the generated key
    message = os.urandom(32)
    signature = judge.sign(yk_pcscd, OPENSC_PKCS11, "01", message, tmp_path, ec_key=key_type != KeyType.RSA2048)
    assert judge.verifies(read_back, message, signature)
    assert CardState.load(card.state).keys["9A"].key_type == int(key_type)  # the card itself holds the new key


def test_a_wrong_management_key_as_so_pin_is_refused_and_changes_nothing(yk_pcscd: YkPcscd, yk_card) -> None:  # type: ignore[no-untyped-def]
    card = yk_card()
    before = state_digest(CardState.load(card.state))
    done = judge.ykcs11(yk_pcscd, "--login", "--login-type", "so", "--so-pin", "11" * 24,
                        "--keypairgen", "--id", "01", "--key-type", "EC:prime256v1", ok=False)
    assert done.returncode != 0 and "CKR_PIN_INCORRECT" in done.stdout + done.stderr
    assert state_digest(CardState.load(card.state)) == before
    assert judge.certificate_objects(yk_pcscd)["01"] == "DN: CN=Alex Example, O=Example Health Trust"


def test_a_wrong_pin_through_ykcs11_spends_one_try_and_says_so(yk_pcscd: YkPcscd, yk_card, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    card = yk_card()
    done = judge.ykcs11(yk_pcscd, "--login", "--pin", "654321", "-O", ok=False)
    assert "CKR_PIN_INCORRECT" in done.stdout + done.stderr
    state = json.loads(card.state.read_text())
    assert state["pin_retries"] == state["pin_max_retries"] - 1
