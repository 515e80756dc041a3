"""A Hypothesis state machine over the side-by-side renewal on a real SoftHSM2 token (issue 14):
runs with faults interleaved — an error injected before or after any PKCS#11 call that changes the
token (faultshim.c), the CA refusing, a cancel at any step, someone else re-issuing a key between
runs — and after every step the invariant: every certificate label of the token still has a
working key with its matching certificate (a signature by the key verifies with the certificate),
and no certificate is left without its key. A clean run after any of it finishes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from card.certificates import verify_signature
from card.enrollment.local import LocalCA
from card.journal import JournalStep
from card.piv import KeyType
from card.renewal.beside_resume import RENEWING
from card.renewal.results import NullReporter, RenewalStep
from card.pkcs11.token import Pkcs11Token
from tests.pkcs11 import judge
from tests.pkcs11.beside_faults import FAULT, MODES, build_shim, shim_env
from tests.pkcs11.beside_harness import context, open_token, run
from tests.pkcs11.softhsm import KeySpec, SoftHsm, clone_softhsm, make_softhsm, put_certificate

CARD_ID = "pkcs11-machine"
P256_KEYS = (KeySpec(b"\x01", "Authentication certificate", "ECCP256", "9A"),
             KeySpec(b"\x02", "Signature certificate", "ECCP256", "9C"))


class CancelAfter(NullReporter):
    def __init__(self, steps: int, cancel) -> None:  # noqa: ANN001
        self.left, self.cancel = steps, cancel

    def step(self, slot: object, step: RenewalStep, detail: str = "") -> None:
        self.left -= 1
        if self.left <= 0:
            self.cancel.set()


def working_labels(token: Pkcs11Token) -> tuple[set[str], list[str]]:
    """Labels with a working key + certificate; labels of certificates without a private key."""
    works, orphans = set(), []
    for held in token.certificates():
        if held.certificate is None:
            continue
        if not held.has_private_key:
            orphans.append(held.ref.label)
            continue
        key = held.certificate.public_key()
        signature = token.sign(held.ref, KeyType.of(key), b"invariant")
        if verify_signature(key, signature, b"invariant"):
            works.add(held.ref.label)
    return works, orphans


class BesideMachine(RuleBasedStateMachine):
    def __init__(self, template: SoftHsm, ca_dir: Path, shim: Path, old_keys: str) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="beside-machine-"))
        self.hsm = clone_softhsm(template, self.dir / "hsm")
        os.environ["SOFTHSM2_CONF"] = str(self.hsm.conf)
        os.environ.update(shim_env())  # every session of this process goes through the shim (one SoftHSM2 instance)
        self.ca_dir, self.shim, self.old_keys = ca_dir, shim, old_keys
        self.labels = {c.label for c in template.certificates}
        self.left_alone: set[str] = set()
        self.runs = 0

    def teardown(self) -> None:
        try:
            self.run_clean()
            pairs = judge.working_pairs(self.hsm)  # the real pkcs11-tool's word
            for label in self.labels:
                assert any(lab == label for lab, _ in pairs.values()), f"{label}: no working pair as pkcs11-tool sees it"
            assert not judge.certificates_without_key(self.hsm)
        finally:
            for name in shim_env(fault=""):
                os.environ.pop(name, None)
            os.environ.pop(FAULT, None)
            shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, fault: str | None = None, refuse: str | None = None, cancel_after: int | None = None):  # noqa: ANN202
        self.runs += 1
        os.environ.update(shim_env())
        options = {"refuse_reason": refuse} if refuse else {}
        ctx = context(self.dir / "state", self.ca_dir, self.old_keys, **options)
        if cancel_after is not None:
            ctx.reporter = CancelAfter(cancel_after, ctx.cancel)
        token = open_token(self.shim, self.hsm.label, self.hsm.pin)
        if fault is not None:
            os.environ[FAULT] = f"{fault}:{self.runs}"  # the run number makes the value new: the count restarts
        try:
            return run(token, ctx, CARD_ID)
        finally:
            os.environ.pop(FAULT, None)
            token.close()

    @rule(mode=st.sampled_from(MODES), n=st.integers(1, 18))
    def run_with_token_fault(self, mode: str, n: int) -> None:
        self._run(f"{mode}:{n}")

    @rule(steps=st.integers(1, 14))
    def run_cancelled(self, steps: int) -> None:
        self._run(cancel_after=steps)

    @rule()
    def run_ca_refuses(self) -> None:
        outcome = self._run(refuse="the RA says no")
        assert outcome.error is None, "a refusal ends the keys it concerns; it is not an error to resume from"

    @rule()
    def run_clean(self) -> None:
        outcome = self._run()
        assert outcome.error is None, f"a clean run did not finish: {outcome.error!r}"
        assert not (self.dir / "state" / f"journal-{CARD_ID}.json").exists()
        token = open_token(self.shim, self.hsm.label, self.hsm.pin)
        try:
            held = token.certificates()
        finally:
            token.close()
        now_labels = {h.ref.label for h in held}
        assert self.labels <= now_labels
        if not self.left_alone:
            assert not [lab for lab in now_labels if lab.endswith(RENEWING)], "a new key of a finished update kept its label"

    @precondition(lambda self: (self.dir / "state" / f"journal-{CARD_ID}.json").exists())
    @rule(which=st.integers(0, 1))
    def someone_else_reissues(self, which: int) -> None:
        """The RA re-issues one key of the unfinished update (a new certificate for its old key)."""
        from card.journal import Journal
        journal = Journal.from_json((self.dir / "state" / f"journal-{CARD_ID}.json").read_text())
        pending = [sj for sj in journal.slots.values() if sj.step not in (JournalStep.DONE, JournalStep.ENDED,
                                                                          JournalStep.WRITTEN, JournalStep.RETIRED)]
        if not pending:
            return
        sj = pending[which % len(pending)]
        spec = next(s for s in P256_KEYS if s.key_id.hex().upper() == sj.slot)
        self.hsm.tool("--delete-object", "--type", "cert", "--id", spec.key_id.hex(), check=False)
        self.hsm.tool("--delete-object", "--type", "privkey", "--id", spec.key_id.hex(), check=False)
        self.hsm.tool("--delete-object", "--type", "pubkey", "--id", spec.key_id.hex(), check=False)
        put_certificate(self.hsm, LocalCA(self.ca_dir), spec)
        self.left_alone.add(sj.slot)

    @invariant()
    def every_label_has_a_working_key_and_certificate(self) -> None:
        token = open_token(self.shim, self.hsm.label, self.hsm.pin)
        try:
            works, orphans = working_labels(token)
        finally:
            token.close()
        assert not orphans, f"certificates without their key: {orphans}"
        for label in self.labels:
            assert any(w == label or w.startswith(label + " (") for w in works), f"{label}: no working key + certificate"


@pytest.fixture(scope="module")
def p256_template(tmp_path_factory: pytest.TempPathFactory, ca_dir: Path) -> SoftHsm:
    return make_softhsm(tmp_path_factory.mktemp("p256"), LocalCA(ca_dir), P256_KEYS)


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shim(tmp_path_factory.mktemp("shim"))


@pytest.mark.sweep
@pytest.mark.parametrize("old_keys", ["delete", "keep"])
def test_side_by_side_state_machine(p256_template: SoftHsm, ca_dir: Path, shim: Path, old_keys: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOFTHSM2_CONF", str(p256_template.conf))
    run_state_machine_as_test(
        lambda: BesideMachine(p256_template, ca_dir, shim, old_keys),
        settings=settings(max_examples=30, stateful_step_count=6, derandomize=True, database=None, deadline=None,
                          suppress_health_check=list(HealthCheck)))

