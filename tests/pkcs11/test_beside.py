"""Side-by-side renewal (issue 14) by the engine (card.renewal.renew) on a real SoftHSM2 token, judged
by pkcs11-tool: both modes of the old key (deleted / kept as superseded, still working, not renewed
again), the audit log, and SCEP RenewalReq's signer."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path


from card.renewal.beside_resume import superseded_label
from card.renewal.results import RenewalRefused
from tests.pkcs11 import judge
from tests.pkcs11.beside_harness import EngineOutcome, engine_context, engine_run
from tests.pkcs11.softhsm import SoftHsm



def renew_once(hsm: SoftHsm, tmp_path: Path, ca_dir: Path, old_keys: str = "delete") -> EngineOutcome:
    return engine_run(engine_context(tmp_path / "state", ca_dir, hsm.module, hsm.label, old_keys), hsm.pin)


def test_renewal_deletes_the_old_keys_and_the_new_ones_take_their_labels(softhsm: SoftHsm, tmp_path: Path,
                                                                         ca_dir: Path) -> None:
    before = {c.key_id: c for c in softhsm.certificates}
    outcome = renew_once(softhsm, tmp_path, ca_dir)
    assert outcome.error is None and outcome.result.ok and len(outcome.result.slots) == 2
    pairs = judge.working_pairs(softhsm)
    assert sorted(label for label, _ in pairs.values()) == sorted(c.label for c in softhsm.certificates)
    assert not set(pairs) & set(before), "the old CKA_IDs are gone"
    for key_id, (label, cert) in pairs.items():
        old = next(c for c in softhsm.certificates if c.label == label).certificate
        assert cert.serial_number != old.serial_number and cert.subject == old.subject
        assert cert.not_valid_after_utc > old.not_valid_after_utc
        assert len(key_id) == 16
    listed = judge.objects(softhsm)
    assert {o.key_id for o in listed} == set(pairs), "no old or stray object left"
    assert len(listed) == 6  # per key: private key, public key, certificate
    assert all(o.label in {c.label for c in softhsm.certificates} for o in listed)
    assert not list((tmp_path / "state").glob("journal-*.json"))
    audit = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    renewed = [a for a in audit if a["outcome"] == "renewed"]
    assert sorted(a["slot"] for a in renewed) == ["01", "02"]
    assert {bytes.fromhex(a["new_key_id"]) for a in renewed} == set(pairs)


def test_keep_mode_relabels_the_old_keys_as_superseded_and_they_still_work(softhsm: SoftHsm, tmp_path: Path,
                                                                            ca_dir: Path) -> None:
    outcome = renew_once(softhsm, tmp_path, ca_dir, "keep")
    assert outcome.error is None and outcome.result.ok
    pairs = judge.working_pairs(softhsm)
    assert len(pairs) == 4
    today = dt.datetime.now(dt.timezone.utc).date()
    for old in softhsm.certificates:
        label, cert = pairs[old.key_id]
        assert label == superseded_label(old.label, today) and cert == old.certificate
        assert all(o.label == label for o in judge.objects(softhsm) if o.key_id == old.key_id)
    new = {k: v for k, v in pairs.items() if k not in {c.key_id for c in softhsm.certificates}}
    assert sorted(label for label, _ in new.values()) == sorted(c.label for c in softhsm.certificates)
    # the next run renews nothing: superseded keys are not renewal candidates
    again = renew_once(softhsm, tmp_path, ca_dir, "keep")
    assert isinstance(again.error, RenewalRefused) and "up to date" in str(again.error)


def test_a_renewal_request_signed_by_the_old_key_needs_an_rsa_key(softhsm: SoftHsm, tmp_path: Path, ca_dir: Path) -> None:
    """SCEP RenewalReq (RFC 8894 §3.3.1): side by side, the OLD key and certificate sign the request
    (they still exist); the CA encrypts its reply to that key, so an EC key is refused before the
    token changes, and the RSA key is handed to the issuer."""
    from card.enrollment.local import LocalCA

    seen: list[object] = []

    class RenewalReqCA(LocalCA):
        def request_signer_slot(self, slot: str) -> str | None:
            return slot

        def issue(self, grant, csr, new_key, card_key=None, *, request_signer=None, not_after_limit=None):  # noqa: ANN001, ANN202
            seen.append(request_signer)
            return super().issue(grant, csr, new_key, card_key, request_signer=request_signer, not_after_limit=not_after_limit)

    ctx = engine_context(tmp_path / "state", ca_dir, softhsm.module, softhsm.label)
    ctx.issuer = RenewalReqCA(ca_dir)
    before = judge.objects(softhsm)
    outcome = engine_run(ctx, softhsm.pin)
    assert outcome.error is None
    by_key = {s.slot.hex: s for s in outcome.result.slots}
    assert by_key["01"].renewed and "RSA only" in str(by_key["02"].error)
    assert not list((tmp_path / "state").glob("journal-*.json")), "the refused key ended: nothing to resume"
    rsa_old = softhsm.certificates[0].certificate
    assert len(seen) == 1 and seen[0].certificate == rsa_old  # type: ignore[attr-defined]
    assert [o for o in judge.objects(softhsm) if o.key_id == b"\x02"] == [o for o in before if o.key_id == b"\x02"]
