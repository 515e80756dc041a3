"""Side-by-side renewal (issue 14) on a real SoftHSM2 token, judged by pkcs11-tool: both modes of
the old key (deleted / kept as superseded), the journal's old and new CKA_IDs, and the resume
rules of card/renewal/beside.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path


from card.renewal.beside_resume import superseded_label
from tests.pkcs11 import judge
from tests.pkcs11.beside_harness import context, run
from tests.pkcs11.mini_token import MiniToken
from tests.pkcs11.softhsm import SoftHsm

CARD_ID = "pkcs11-test"


def open_token(hsm: SoftHsm) -> MiniToken:
    return MiniToken(hsm.module, hsm.label, hsm.pin)


def test_renewal_deletes_the_old_keys_and_the_new_ones_take_their_labels(softhsm: SoftHsm, tmp_path: Path,
                                                                         ca_dir: Path) -> None:
    before = {c.key_id: c for c in softhsm.certificates}
    outcome = run(open_token(softhsm), context(tmp_path / "state", ca_dir), CARD_ID)
    assert outcome.error is None and len(outcome.renewed) == 2
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
    assert not (tmp_path / "state" / "journal-pkcs11-test.json").exists()


def test_keep_mode_relabels_the_old_keys_as_superseded_and_they_still_work(softhsm: SoftHsm, tmp_path: Path,
                                                                            ca_dir: Path) -> None:
    outcome = run(open_token(softhsm), context(tmp_path / "state", ca_dir, old_keys="keep"), CARD_ID)
    assert outcome.error is None and len(outcome.renewed) == 2
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
    again = run(open_token(softhsm), context(tmp_path / "state", ca_dir, old_keys="keep"), CARD_ID)
    assert again.renewed == {} and again.error is None
