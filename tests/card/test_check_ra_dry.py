"""The RA hook's dry mode (issue 15, ``renew --check``): with ``issuer.challenge_dry_run = true`` the
hook gets the same proof of possession plus ``"dry_run": true`` and answers whether it would grant,
handing out and recording no challenge; a hook that prints one anyway does not honour the dry mode
(refused, the value dropped); without ``challenge_dry_run`` the hook is never run by a dry run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from card.config import ConfigError, load_settings
from card.emulator.card import SoftPivCard
from card.enrollment.base import DryRunUnsupported, RaRejected, RaUnavailable
from card.enrollment.local import LocalCA
from card.enrollment.scep import ScepIssuer
from card.enrollment.scep_settings import ScepIssuerSettings
from card.service import CheckOutcome
from tests.card.test_check_dry_run import Snapshot, door, ec_card, item, run_check  # noqa: F401 - a fixture
from tests.card.test_scep_authorisation import RA, pki  # noqa: F401 - the fixture

HOOK = [sys.executable, str(RA), "hook"]


def issuer(command: list[str], dry: bool = True) -> ScepIssuer:
    scep = ScepIssuer(ScepIssuerSettings("http://127.0.0.1:9/scep", None, challenge_command=tuple(command),
                                         challenge_dry_run=dry))
    scep._ca, scep._caps = [], {"POSTPKIOPERATION", "AES"}  # GetCACert/GetCACaps answered (tested in integration)
    return scep


def test_a_hook_that_honours_the_dry_mode_checks_the_proof_and_hands_out_nothing(pki: dict) -> None:  # noqa: F811
    scep = issuer(HOOK + [str(pki["tokens"]), str(pki["ca_pem"])])
    note = scep.check_renewal("9A", pki["cert"], pki["sign"])
    assert "would grant" in note and "no challenge" in note
    assert not pki["tokens"].exists() or list(pki["tokens"].iterdir()) == []


def test_in_its_dry_mode_the_ra_still_checks_the_proof_of_possession(pki: dict) -> None:  # noqa: F811
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    other = rsa.generate_private_key(65537, 2048)
    scep = issuer(HOOK + [str(pki["tokens"]), str(pki["ca_pem"])])
    with pytest.raises(RaRejected, match="does not verify"):
        scep.check_renewal("9A", pki["cert"], lambda m: other.sign(m, padding.PKCS1v15(), hashes.SHA256()))


def test_a_hook_that_prints_a_challenge_in_a_dry_run_does_not_honour_it(pki: dict) -> None:  # noqa: F811
    scep = issuer(HOOK + [str(pki["tokens"]), str(pki["ca_pem"]), "--ignore-dry-run"])
    with pytest.raises(RaRejected, match="does not honour") as refused:
        scep.check_renewal("9A", pki["cert"], pki["sign"])
    handed_out = [t.name for t in pki["tokens"].iterdir()]
    assert len(handed_out) == 1 and handed_out[0] not in str(refused.value)  # dropped, never shown


def test_without_challenge_dry_run_the_hook_is_never_run(pki: dict, tmp_path: Path) -> None:  # noqa: F811
    marker = tmp_path / "ran"
    scep = issuer(["/bin/sh", "-c", f"touch {marker}; echo CHALLENGE"], dry=False)
    with pytest.raises(DryRunUnsupported, match="challenge_dry_run"):
        scep.check_renewal("9A", pki["cert"], pki["sign"])
    assert not marker.exists()


@pytest.mark.parametrize("code,error", [(75, RaUnavailable), (1, RaRejected)])
def test_a_dry_refusal_or_unavailability_is_the_hooks_answer(pki: dict, code: int, error: type) -> None:  # noqa: F811
    scep = issuer(["/bin/sh", "-c", f"cat >/dev/null; echo 'not in the directory' >&2; exit {code}"])
    with pytest.raises(error, match="not in the directory"):
        scep.check_renewal("9A", pki["cert"], pki["sign"])


def test_the_hook_sees_dry_run_true_in_its_json(pki: dict, tmp_path: Path) -> None:  # noqa: F811
    seen = tmp_path / "proof.json"
    scep = issuer(["/bin/sh", "-c", f"cat > {seen}"])
    scep.check_renewal("9C", pki["cert"], pki["sign"])
    proof = json.loads(seen.read_text())
    assert proof["dry_run"] is True and proof["slot"] == "9C" and proof["signature"]


@pytest.mark.parametrize("value,ok", [("true", True), ("false", True), ('"yes"', False)])
def test_challenge_dry_run_is_a_boolean_setting(tmp_path: Path, value: str, ok: bool) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[issuer]\ntype = "scep"\nurl = "http://ca.example/scep"\nchallenge_command = ["hook"]\n'
                    f"challenge_dry_run = {value}\n")
    if ok:
        assert load_settings(path).issuer.challenge_dry_run is (value == "true")  # type: ignore[attr-defined]
    else:
        with pytest.raises(ConfigError, match="challenge_dry_run"):
            load_settings(path)


def test_the_dry_run_asks_the_ra_with_the_cards_own_old_keys(make_card, ca: LocalCA, ca_dir: Path,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    card: SoftPivCard = make_card()  # RSA: the SCEP client's keys
    tokens = tmp_path / "tokens"
    before = Snapshot(card)
    scep = issuer(HOOK + [str(tokens), str(ca_dir / "ca.pem")])
    scep._ca = ca.ca_certificates()
    report = run_check(door(card, scep))
    for slot in ("9A", "9C"):
        granted = item(report, "ra_grant", slot)
        assert granted.outcome is CheckOutcome.PASSED and "would grant" in granted.message, granted
    assert not tokens.exists()
    before.assert_unchanged()


def test_a_ca_that_sends_no_certificate_fails_the_ca_check(ec_card: SoftPivCard, pki: dict) -> None:  # noqa: F811
    report = run_check(door(ec_card, issuer(HOOK + [str(pki["tokens"]), str(pki["ca_pem"])])))
    assert item(report, "ca").outcome is CheckOutcome.FAILED and item(report, "ca").code == "CA-BAD-REPLY"


def test_renewal_req_signers_are_checked_with_a_test_signature_and_nothing_changes(make_card, ca: LocalCA) -> None:  # type: ignore[no-untyped-def]
    card: SoftPivCard = make_card()
    scep = ScepIssuer(ScepIssuerSettings("http://127.0.0.1:9/scep", None, message_type="RenewalReq"))
    scep._ca, scep._caps = ca.ca_certificates(), {"POSTPKIOPERATION", "AES", "RENEWAL"}
    before = Snapshot(card)
    report = run_check(door(card, scep))
    signer = item(report, "request_signer")
    assert signer.outcome is CheckOutcome.PASSED and "9A, 9C" in signer.message, signer
    assert item(report, "ra_grant", "9A").outcome is CheckOutcome.PASSED  # a static challenge: pinned and POST
    before.assert_unchanged()
    # a signer whose key is not its certificate's: the test signature says so
    card.state.keys["9C"] = card.state.keys["9A"]
    report = run_check(door(card, scep))
    assert item(report, "request_signer").outcome is CheckOutcome.FAILED
    assert "does not match its certificate" in item(report, "request_signer").message
    report = run_check(door(card, scep), pin=None)
    assert item(report, "request_signer").outcome is CheckOutcome.SKIPPED
    assert "Request signer" in item(report, "pin").message
