"""The resume rules of a side-by-side renewal (issue 14; card/renewal/beside_resume.py), first as
the pure decision, then on a real SoftHSM2 token with the calls that change it counted by
faultshim.c: a token whose old certificate changed since the journal is never touched (zero
token-changing calls); a new key without a certificate is deleted only when the journal proves
this update made it and nothing was issued for it; a new certificate already written → only the
clean-up is finished. And the journal: PKCS#11 journals hold the old and new CKA_ID; PIV journals
load as before and may not name PKCS#11 fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from card.certificates import fingerprint
from card.enrollment.local import LocalCA
from card.journal import Journal, JournalFileError, JournalStep, SlotJournal, parse_journal
from card.renewal.beside import BesideSteps
from card.renewal.beside_resume import BesideResume, decide, is_leftover_label, renewing_label, superseded_label
from card.renewal.records import RunRecords
from card.token import KeyRef
from tests.pkcs11 import judge
from tests.pkcs11.beside_faults import build_shim, shim_env
from tests.pkcs11.beside_harness import context, open_token, run, run_on
from tests.pkcs11.softhsm import SoftHsm, put_certificate

PEM = serialization.Encoding.PEM
CARD_ID = "pkcs11-resume"


def entry(old: x509.Certificate, step: JournalStep, **fields: object) -> SlotJournal:
    return SlotJournal("01", fingerprint(old), old.public_bytes(PEM).decode(), step=step, old_key_id="01",
                       label="Authentication certificate", **fields)  # type: ignore[arg-type]


def _another(cert: x509.Certificate) -> x509.Certificate:
    """A certificate that is neither ``cert`` nor the issued one: ``cert`` re-signed by a throwaway key."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.subject).public_key(key.public_key())
            .serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))


# -- the decision, pure ------------------------------------------------------------------------
def test_a_changed_old_certificate_is_never_touched_at_any_step(softhsm: SoftHsm) -> None:
    old, other = softhsm.certificates[0].certificate, softhsm.certificates[1].certificate
    for step in JournalStep:
        sj = entry(old, step, new_key_id="AB" * 16)
        assert decide(sj, other, False, None, True) is BesideResume.CHANGED, step
        assert decide(sj, None, True, None, True) is BesideResume.CHANGED, step  # junk where the certificate was


def test_the_old_certificate_may_be_gone_only_once_the_new_one_is_written(softhsm: SoftHsm) -> None:
    old, new = softhsm.certificates[0].certificate, softhsm.certificates[1].certificate
    for step in (JournalStep.AUTHORISED, JournalStep.GENERATING, JournalStep.GENERATED, JournalStep.ISSUED):
        assert decide(entry(old, step, new_key_id="AB" * 16), None, False, None, False) is BesideResume.CHANGED
    written = entry(old, JournalStep.WRITTEN, new_key_id="AB" * 16, certificate_pem=new.public_bytes(PEM).decode())
    assert decide(written, None, False, new, True) is BesideResume.FINISH
    assert decide(written, old, False, new, True) is BesideResume.FINISH
    assert decide(written, old, False, None, False) is BesideResume.CHANGED  # our new objects are gone: hands off


def test_a_new_key_without_certificate_is_deleted_only_when_provably_ours_and_nothing_issued(softhsm: SoftHsm) -> None:
    old = softhsm.certificates[0].certificate
    grant = {"grant_id": "g", "slot": "01", "subject_der_hex": "30", "old_certificate_fingerprint": "x", "expires": "2099-01-01T00:00:00+00:00"}
    generating = entry(old, JournalStep.GENERATING, new_key_id="AB" * 16, grant=grant)
    assert decide(generating, old, False, None, False) is BesideResume.DISCARD
    generated = entry(old, JournalStep.GENERATED, new_key_id="AB" * 16, grant=grant, public_key_pem="x")
    assert decide(generated, old, False, None, True) is BesideResume.ISSUE
    assert decide(generated, old, False, None, False) is BesideResume.DISCARD
    sent = entry(old, JournalStep.GENERATED, new_key_id="AB" * 16, grant={**grant, "request_sent": "1"}, public_key_pem="x")
    assert decide(sent, old, False, None, True) is BesideResume.ISSUE  # ask again: the CA gives the same certificate
    assert decide(sent, old, False, None, False) is BesideResume.START  # the CA may hold a certificate for it: kept


def test_every_combination_keeps_the_safety_rules(softhsm: SoftHsm) -> None:
    """All steps × what the old id holds × what the new id holds × does the new key work × was a
    request sent × is an issued certificate journalled: the rules of DESIGN §3 / TOKEN.md hold."""
    import itertools

    old, issued = softhsm.certificates[0].certificate, softhsm.certificates[1].certificate
    other = _another(old)
    grant = {"grant_id": "g", "slot": "01", "subject_der_hex": "30", "old_certificate_fingerprint": "x",
             "expires": "2099-01-01T00:00:00+00:00"}
    olds = {"same": (old, False), "other": (other, False), "junk": (None, True), "none": (None, False)}
    news = {"none": None, "issued": issued, "other": old}
    for step, (o_name, (o_cert, junk)), (n_name, n_cert), works, sent, known in itertools.product(
            JournalStep, olds.items(), news.items(), (False, True), (False, True), (False, True)):
        sj = entry(old, step, new_key_id="AB" * 16, grant={**grant, **({"request_sent": "1"} if sent else {})},
                   certificate_pem=issued.public_bytes(PEM).decode() if known else None)
        action = decide(sj, o_cert, junk, n_cert, works)
        case = (step, o_name, n_name, works, sent, known, action)
        if o_name in ("other", "junk"):
            assert action is BesideResume.CHANGED, case  # never touch a changed old certificate
        if o_name == "none":
            assert action in (BesideResume.FINISH, BesideResume.CHANGED), case  # the old one goes only at the end
        if n_name == "other" or (n_name == "issued" and not known):
            assert action is BesideResume.CHANGED, case  # a certificate under our new id we did not get
        if action is BesideResume.DISCARD:
            assert step is JournalStep.GENERATING or (not known and not sent), case  # nothing issued for it
        if action is BesideResume.FINISH:
            assert step in (JournalStep.WRITTEN, JournalStep.RETIRED) and n_name == "issued" and works, case
        if action in (BesideResume.WRITE, BesideResume.ISSUE):
            assert works and step in (JournalStep.GENERATED, JournalStep.ISSUED), case
            assert (action is BesideResume.WRITE) == known, case


def test_labels() -> None:
    import datetime as dt

    assert renewing_label("Signature") == "Signature (renewing)"
    assert superseded_label("Signature", dt.date(2026, 12, 4)) == "Signature (superseded 2026-12-04)"
    assert is_leftover_label("Signature (renewing)") and is_leftover_label("Signature (superseded 2026-12-04)")
    assert not is_leftover_label("Signature") and not is_leftover_label("Smith (Jr)")


# -- the journal ---------------------------------------------------------------------------------
def test_pkcs11_journal_round_trips_with_old_and_new_key_ids(softhsm: SoftHsm) -> None:
    old = softhsm.certificates[0].certificate
    journal = Journal("pkcs11-x", interface="pkcs11")
    journal.slots["01"] = entry(old, JournalStep.GENERATING, new_key_id="AB" * 16)
    back = parse_journal(journal.to_json().encode())
    assert back.interface == "pkcs11" and back.slots["01"].new_key_id == "AB" * 16
    assert back.slots["01"].old_key_id == "01" and back.slots["01"].label == "Authentication certificate"


def test_piv_journals_stay_strict(softhsm: SoftHsm) -> None:
    old = softhsm.certificates[0].certificate
    raw = json.loads(Journal("c0ffee").to_json())
    raw.pop("interface")  # a journal written before PKCS#11 tokens
    raw["slots"] = {"9A": {"slot": "9A", "step": "planned", "old_fingerprint": fingerprint(old)}}
    assert parse_journal(json.dumps(raw).encode()).interface == "piv"
    for bad in ({"slots": {"01": {"slot": "01"}}},  # not a PIV slot
                {"slots": {"9A": {"slot": "9A", "new_key_id": "AB"}}},  # a PKCS#11 field in a PIV journal
                {"interface": "pcsc"}):
        with pytest.raises(JournalFileError):
            parse_journal(json.dumps({**raw, **bad}).encode())
    for name in ("ab", "0", "", "ZZ", "00" * 65):
        with pytest.raises(JournalFileError):
            parse_journal(json.dumps({**raw, "interface": "pkcs11", "slots": {name: {"slot": name}}}).encode())


# -- on the token, with the token-changing calls counted ---------------------------------------
@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shim(tmp_path_factory.mktemp("shim"))


@pytest.fixture
def counted(shim: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "calls.log"
    for name, value in shim_env(log).items():
        monkeypatch.setenv(name, value)
    return log


def calls(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def stop_after(softhsm: SoftHsm, shim: Path, state: Path, ca_dir: Path, step: JournalStep) -> Journal:
    """Renew key 01 up to ``step`` (journalled) and stop there, as a killed run would."""
    ctx = context(state, ca_dir)
    token = open_token(shim, softhsm.label, softhsm.pin)
    old = softhsm.certificates[0]
    journal = Journal(CARD_ID, interface="pkcs11")
    sj = journal.slots["01"] = SlotJournal("01", fingerprint(old.certificate), old.certificate.public_bytes(PEM).decode(),
                                           label=old.label, old_key_id="01")
    steps = BesideSteps(token, ctx, RunRecords(ctx))
    steps.authorise(KeyRef(b"\x01", old.label), old.certificate, sj, journal)
    key_type = steps.key_type(old.certificate)
    steps.generate(sj, journal, key_type)
    if step is not JournalStep.GENERATED:
        cert = steps.issue(KeyRef(b"\x01", old.label), old.certificate,
                           serialization.load_pem_public_key(sj.public_key_pem.encode()), key_type, sj, journal)  # type: ignore[union-attr]
        if step is JournalStep.WRITTEN:
            steps.write_and_check(cert, key_type, sj, journal)
    token.close()
    return journal


def test_a_token_whose_old_certificate_changed_is_never_touched(softhsm: SoftHsm, shim: Path, counted: Path,
                                                                tmp_path: Path, ca_dir: Path) -> None:
    journal = stop_after(softhsm, shim, tmp_path / "state", ca_dir, JournalStep.GENERATED)
    new_id = bytes.fromhex(journal.slots["01"].new_key_id or "")
    softhsm.tool("--delete-object", "--type", "cert", "--id", "01")  # the RA re-issues key 01's certificate
    softhsm.tool("--delete-object", "--type", "privkey", "--id", "01")
    softhsm.tool("--delete-object", "--type", "pubkey", "--id", "01")
    reissued = put_certificate(softhsm, LocalCA(ca_dir), softhsm.certificates[0].spec, expires_in_days=300)
    before = judge.objects(softhsm)
    counted.write_text("")
    outcome = run_on(shim, softhsm.label, softhsm.pin, context(tmp_path / "state", ca_dir), CARD_ID)
    assert outcome.changed == ["01"]
    assert calls(counted) == [], "the token was touched"
    assert judge.objects(softhsm) == before  # the stray new key under our id stays: the RA may need to see it
    assert any(o.key_id == new_id for o in before)
    assert judge.working_pairs(softhsm)[b"\x01"][1] == reissued.certificate


def test_a_new_key_without_certificate_from_an_interrupted_generation_is_deleted(softhsm: SoftHsm, shim: Path,
                                                                                counted: Path, tmp_path: Path,
                                                                                ca_dir: Path) -> None:
    journal = stop_after(softhsm, shim, tmp_path / "state", ca_dir, JournalStep.GENERATED)
    sj = journal.slots["01"]
    stray = bytes.fromhex(sj.new_key_id or "")
    sj.step, sj.public_key_pem = JournalStep.GENERATING, None  # as if killed inside C_GenerateKeyPair
    context(tmp_path / "state", ca_dir).journals.save(journal)
    counted.write_text("")
    outcome = run_on(shim, softhsm.label, softhsm.pin, context(tmp_path / "state", ca_dir), CARD_ID)
    assert outcome.error is None and "01" in outcome.renewed
    assert calls(counted)[:2] == ["C_DestroyObject", "C_DestroyObject"]  # the stray private + public key first
    assert stray not in {o.key_id for o in judge.objects(softhsm)}


def test_a_new_certificate_already_written_only_finishes_the_clean_up(softhsm: SoftHsm, shim: Path, counted: Path,
                                                                       tmp_path: Path, ca_dir: Path) -> None:
    journal = stop_after(softhsm, shim, tmp_path / "state", ca_dir, JournalStep.WRITTEN)
    new_id = bytes.fromhex(journal.slots["01"].new_key_id or "")
    counted.write_text("")
    outcome = run_on(shim, softhsm.label, softhsm.pin, context(tmp_path / "state", ca_dir), CARD_ID)
    assert outcome.error is None
    made = calls(counted)
    first_key = made[:made.index("C_GenerateKeyPair")] if "C_GenerateKeyPair" in made else made
    assert first_key == ["C_DestroyObject"] * 3 + ["C_SetAttributeValue"] * 3  # no new key, no CA, no write for 01
    pairs = judge.working_pairs(softhsm)
    assert pairs[new_id][0] == "Authentication certificate" and b"\x01" not in pairs


@pytest.mark.parametrize(("old_keys", "per_key"), [
    ("delete", ["C_GenerateKeyPair", "C_CreateObject"] + ["C_DestroyObject"] * 3 + ["C_SetAttributeValue"] * 3),
    ("keep", ["C_GenerateKeyPair", "C_CreateObject"] + ["C_SetAttributeValue"] * 6),
])
def test_the_calls_that_change_the_token_are_exactly_the_side_by_side_order(softhsm: SoftHsm, shim: Path, counted: Path,
                                                                              tmp_path: Path, ca_dir: Path,
                                                                              old_keys: str, per_key: list[str]) -> None:
    """Per key: the new key pair, its certificate, then (only then) the old objects go (3 destroys,
    certificate first) or are relabelled, then the new objects take the old label. Nothing else
    changes the token (the kill sweep kills at each of these)."""
    token = open_token(shim, softhsm.label, softhsm.pin)
    try:
        outcome = run(token, context(tmp_path / "state", ca_dir, old_keys), CARD_ID)
        total = token.calls
    finally:
        token.close()
    assert outcome.error is None and len(outcome.renewed) == 2
    assert calls(counted) == per_key * 2
    print(f"{old_keys}: {total} PKCS#11 calls for two keys (RSA-2048 + P-256), {len(per_key) * 2} of them change the token")


def test_a_journal_naming_a_key_this_update_did_not_make_never_deletes_it(softhsm: SoftHsm, shim: Path,
                                                                          counted: Path, tmp_path: Path,
                                                                          ca_dir: Path) -> None:
    """Tester F-28: a damaged or forged journal whose "new" key id named an RA's escrow key (no
    certificate) made the resume delete it. The label proves what this update made; the escrow key stays."""
    softhsm.tool("--keypairgen", "--key-type", "EC:secp256r1", "--id", "aa", "--label", "RA escrow key")
    journal = stop_after(softhsm, shim, tmp_path / "state", ca_dir, JournalStep.GENERATED)
    sj = journal.slots["01"]
    sj.step, sj.new_key_id, sj.public_key_pem = JournalStep.GENERATING, "AA", None
    context(tmp_path / "state", ca_dir).journals.save(journal)
    outcome = run_on(shim, softhsm.label, softhsm.pin, context(tmp_path / "state", ca_dir), CARD_ID)
    assert outcome.error is None and "01" in outcome.renewed
    assert b"\xaa" in {o.key_id for o in judge.objects(softhsm)}  # the escrow key is still there
