"""The renewal through Yubico's libykcs11 (``[card] interface = "pkcs11"``) on our software PIV card
behind a real pcscd: the PIV order (a key cannot live beside the old one), judged by OpenSC; the
card pulled (vpcd connection closed) at points of the renewal → what the user is told, nothing lost,
the next run finishes (issue 14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from card.emulator.state import CardState
from card.piv import KeyType
from tests.ykcs11 import judge
from tests.ykcs11.pcscd import YkCard, YkPcscd
from tests.ykcs11.renewal import Workdir, opensc_verdict

pytestmark = pytest.mark.pcscd


def _serials(pcscd: YkPcscd) -> dict[str, int]:
    return {key_id: judge.read_certificate_opensc(pcscd, key_id).serial_number for key_id in ("01", "02")}


@pytest.mark.parametrize("key_type", [KeyType.RSA2048, KeyType.ECCP256], ids=lambda k: k.name)
def test_renewal_through_ykcs11_in_piv_order_and_opensc_judges_the_card(
        yk_pcscd: YkPcscd, yk_card, tmp_path: Path, key_type: KeyType) -> None:  # type: ignore[no-untyped-def]
    work = Workdir.make(tmp_path / "work", yk_pcscd)
    yk_card(key_type=key_type, issuer=work.ca)
    before = _serials(yk_pcscd)

    done, report = work.renew()
    assert report.get("outcome") == "renewed", done.stdout + done.stderr
    assert report["update"] == "AVAILABLE" and report["read"] == {"9A": "DUE", "9C": "DUE"}

    renewed = opensc_verdict(work, key_type is not KeyType.RSA2048, before)
    assert {f"{c.serial_number:X}" for c in renewed.values()} == {s["new_serial"] for s in report["slots"]}
    assert set(judge.certificate_objects(yk_pcscd)) == {"01", "02"}  # ykcs11 itself lists the new ones
    again, second = work.renew()
    assert second.get("update") == "UP_TO_DATE", again.stdout + again.stderr


PULLS = [
    pytest.param("generate:1", "01", id="9A-generate"),
    pytest.param("put-data:1", "01", id="9A-ykcs11-placeholder-write"),
    pytest.param("put-data:2", "01", id="9A-certificate-write"),
    pytest.param("put-data:4", "02", id="9C-certificate-write"),
]
"""Where the card is pulled. Through libykcs11 each C_GenerateKeyPair sends GENERATE and then a PUT
DATA of its own (a placeholder certificate for the new key): PUT DATA 1 and 3 are those, 2 and 4
are the engine's certificate writes for 9A and 9C."""


def _working(pcscd: YkPcscd, card: YkCard) -> set[str]:
    """The PKCS#11 ids whose certificate (as OpenSC reads it) holds the public key of the private key
    the card has in that slot."""
    keys = CardState.load(card.state).keys
    found = set()
    for key_id, slot in (("01", "9A"), ("02", "9C")):
        private = serialization.load_pem_private_key(keys[slot].private_pem.encode(), None)
        if judge.public_key_der_of(private.public_key()) == judge.public_key_der(judge.read_certificate_opensc(pcscd, key_id)):
            found.add(key_id)
    return found


@pytest.mark.parametrize("fault,renewing", PULLS)
def test_card_pulled_during_a_ykcs11_renewal_says_so_loses_nothing_and_the_next_run_finishes(
        yk_pcscd: YkPcscd, yk_card, tmp_path: Path, fault: str, renewing: str) -> None:  # type: ignore[no-untyped-def]
    work = Workdir.make(tmp_path / "work", yk_pcscd)
    card: YkCard = yk_card(issuer=work.ca, extra=["--drop-at", fault])
    before = _serials(yk_pcscd)

    done, report = work.renew()
    assert report.get("outcome") == "failed" and report["journal_kept"], done.stdout + done.stderr
    error = report["error"]
    assert error["type"] in ("TokenDeviceError", "TokenRemovedError"), error
    assert "re-insert" in error["next_step"] and "resumed" in error["next_step"]  # what to do, and that it resumes
    journal = next(Path(os.environ["XDG_STATE_HOME"]).rglob("journal-*.json"), None)
    assert journal is not None, "the journal of the stopped renewal must be kept"

    card.stop()  # the holder puts the card back
    card.extra = []
    card.start()
    assert {"01", "02"} - {renewing} <= _working(yk_pcscd, card)  # the slot not being renewed still works
    again, second = work.renew()
    assert second.get("update") == "RESUME", again.stdout + again.stderr
    assert second.get("outcome") == "renewed" and second["reference"] == report["reference"], again.stdout
    opensc_verdict(work, False, before)
