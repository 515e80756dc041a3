"""The renewal through Yubico's libykcs11 (``[card] interface = "pkcs11"``) on our software PIV card
behind a real pcscd: the PIV order (a key cannot live beside the old one), judged by OpenSC; the
card pulled (vpcd connection closed) at points of the renewal → what the user is told, nothing lost,
the next run finishes (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from card.emulator.state import CardState
from card.piv import KeyType
from tests.ykcs11 import judge
from tests.ykcs11.pcscd import YkCard, YkPcscd
from tests.ykcs11.renewal import Workdir, all_but_the_pin_counter, opensc_verdict

pytestmark = pytest.mark.pcscd


def _serials(pcscd: YkPcscd) -> dict[str, int]:
    return {key_id: judge.read_certificate_opensc(pcscd, key_id).serial_number for key_id in ("01", "02")}


PIV_ID = {"9A": "01", "9C": "02"}


@pytest.mark.parametrize("key_type", [KeyType.RSA2048, KeyType.ECCP256], ids=lambda k: k.name)
def test_cardrenew_renews_through_ykcs11_in_piv_order_and_opensc_judges_the_card(
        yk_pcscd: YkPcscd, yk_card, tmp_path: Path, key_type: KeyType) -> None:  # type: ignore[no-untyped-def]
    work = Workdir.make(tmp_path / "work", yk_pcscd)
    card = yk_card(key_type=key_type, issuer=work.ca)
    before = _serials(yk_pcscd)
    status = work.status()
    assert status["update"] == "available" and status["token"]["renewal_mode"] == "piv_order"
    assert status["token"]["label"] == f"YubiKey PIV #{CardState.load(card.state).serial}"

    done, report = work.renew()
    assert done.returncode == 0 and report.get("outcome") == "renewed", done.stdout + done.stderr
    assert report["token"]["renewal_mode"] == "piv_order"  # the new key replaces the old one: no side by side

    renewed = opensc_verdict(work, key_type is not KeyType.RSA2048, before)
    assert {f"{c.serial_number:X}" for c in renewed.values()} == {s["new_serial"] for s in report["slots"]}
    assert set(judge.certificate_objects(yk_pcscd)) == {"01", "02"}  # ykcs11 itself lists the new ones
    after = work.status()
    assert after["exit_code"] == 0 and all(s["state"] == "ok" for s in after["slots"]), after


PULLS = ["put-data:4"]
"""Where the card is pulled (the N-th command of a step) in the default suite. The renewal goes by
label: 9C ("Digital Signature") first, then 9A. Through libykcs11 each C_GenerateKeyPair sends
GENERATE and then a PUT DATA of its own (a placeholder certificate for the new key): PUT DATA 1 and
3 are those, 2 and 4 the engine's certificate writes (both found the journal-key and placeholder
bugs; 4 also has 9C renewed before it). The sweep pulls it at every GENERATE, PUT DATA and signature."""
SWEEP = [f"generate:{n}" for n in (1, 2)] + [f"put-data:{n}" for n in (1, 2, 3)] + [f"sign:{n}" for n in range(1, 7)]
"""A renewal of 9A and 9C signs six times: the two authorisations with the old keys, then per slot
the CSR and the test signature."""


def _working(pcscd: YkPcscd, card: YkCard) -> set[str]:
    """The PIV slots whose certificate (as OpenSC reads it) holds the public key of the private key
    the card has in that slot."""
    keys = CardState.load(card.state).keys
    found = set()
    for slot, key_id in PIV_ID.items():
        private = serialization.load_pem_private_key(keys[slot].private_pem.encode(), None)
        if judge.public_key_der_of(private.public_key()) == judge.public_key_der(judge.read_certificate_opensc(pcscd, key_id)):
            found.add(slot)
    return found


@pytest.mark.parametrize("fault", PULLS + [pytest.param(f, marks=pytest.mark.sweep) for f in SWEEP])
def test_card_pulled_during_a_ykcs11_renewal_says_so_loses_nothing_and_the_next_run_finishes(
        yk_pcscd: YkPcscd, yk_card, tmp_path: Path, fault: str) -> None:  # type: ignore[no-untyped-def]
    work = Workdir.make(tmp_path / "work", yk_pcscd)
    card: YkCard = yk_card(issuer=work.ca, extra=["--drop-at", fault])
    before, untouched = _serials(yk_pcscd), all_but_the_pin_counter(card.state)

    done, report = work.renew()
    if done.returncode == 3:  # pulled while authorising with the old keys: nothing on the card changed
        error = report["error"]
        assert error["code"] in ("DEVICE", "REMOVED") and "re-insert" in error["next_step"].lower(), report
        assert all_but_the_pin_counter(card.state) == untouched
        reference = None
    else:
        reference = _stopped_after_a_change(work, card, done, report)
    card.stop()  # the holder puts the card back
    card.extra = []
    card.start()
    if reference is not None:
        _status_between_the_runs(work, card, report)
    again, second = work.renew()
    assert again.returncode == 0 and second.get("outcome") == "renewed", again.stdout + again.stderr
    assert reference is None or second["reference"] == reference
    opensc_verdict(work, False, before)


def _stopped_after_a_change(work: Workdir, card: YkCard, done, report: dict) -> str:  # type: ignore[no-untyped-def, type-arg]
    """The run stopped after the card changed: words, journal kept; returns its reference."""
    assert done.returncode == 13 and report.get("outcome") == "completed_with_errors", done.stdout + done.stderr
    assert report["journal_kept"] and "Re-insert your card" in report["next_step"]
    assert "resumes" in report["next_step"]
    stopped = [s for s in report["slots"] if not s["renewed"] and "not attempted" not in s["error"]]
    assert len(stopped) == 1, report
    # libykcs11 answers a pulled card CKR_DEVICE_ERROR, and pcscd may not have seen the removal yet when
    # the token asks whether it is still there: "removed" or the device error, never a storage hint
    said = stopped[0]["error"]
    assert any(w in said for w in ("removed", "went away", "CKR_DEVICE_ERROR")) and "SoftHSM" not in said, said
    return str(report["reference"])


def _status_between_the_runs(work: Workdir, card: YkCard, report: dict) -> None:  # type: ignore[type-arg]
    """What the holder sees before running renew again: the update to resume, the holder, and the
    stopped slot either working already (stopped after its write) or 'unfinished' (run renew)."""
    stopped = next(s["slot"] for s in report["slots"] if not s["renewed"] and "not attempted" not in s["error"])
    working = _working(work.pcscd, card)
    assert set(PIV_ID) - {stopped} <= working  # every other slot still works
    status = work.status()
    assert status["pending_reference"] == report["reference"] and status["update"] == "resume", status
    assert status["holder"] == "Alex Example", status
    shown = {s["slot"]: s for s in status["slots"]}[PIV_ID[stopped]]
    if stopped not in working:
        assert status["exit_code"] == 13, status  # 13: run renew to finish
        assert shown["state"] == "unfinished" and "does not work until the unfinished update" in shown["note"], shown
