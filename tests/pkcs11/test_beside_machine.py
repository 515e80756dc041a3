"""A Hypothesis state machine over the renewal engine (card.renewal.renew) on a real SoftHSM2 token
(issue 14, side by side):
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
from card.errors import CardError
from card.journal import JournalStep
from card.renewal.results import RenewalRefused
from card.piv import KeyType
from card.renewal.beside_resume import RENEWING
from card.renewal.results import NullReporter, RenewalStep
from card.pkcs11.token import Pkcs11Token
from tests.pkcs11 import judge
from tests.pkcs11.beside_faults import FAULT, MODES, build_shim, shim_env
from tests.pkcs11.beside_harness import EngineOutcome, engine_context, engine_run, open_token
from tests.pkcs11.softhsm import KeySpec, SoftHsm, clone_softhsm, make_softhsm, put_certificate


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
            self.run_clean()  # a key the RA re-issued mid-update is renewed by the run after
            pairs = judge.working_pairs(self.hsm)  # the real pkcs11-tool's word
            for label in self.labels:
                assert any(lab == label for lab, _ in pairs.values()), f"{label}: no working pair as pkcs11-tool sees it"
            assert not judge.certificates_without_key(self.hsm)
        finally:
            for name in shim_env(fault=""):
                os.environ.pop(name, None)
            os.environ.pop(FAULT, None)
            shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, fault: str | None = None, refuse: str | None = None, cancel_after: int | None = None) -> EngineOutcome:
        """One run of the real engine (card.renewal.renew) on the token through the shim."""
        self.runs += 1
        options = {"refuse_reason": refuse} if refuse else {}
        ctx = engine_context(self.dir / "state", self.ca_dir, self.shim, self.hsm.label, self.old_keys, **options)
        if cancel_after is not None:
            ctx.reporter = CancelAfter(cancel_after, ctx.cancel)
        if fault is not None:
            os.environ[FAULT] = f"{fault}:{self.runs}"  # the run number makes the value new: the count restarts
        try:
            outcome = engine_run(ctx, self.hsm.pin)
        finally:
            os.environ.pop(FAULT, None)
        assert outcome.error is None or isinstance(outcome.error, CardError), f"not a documented error: {outcome.error!r}"
        if outcome.result is not None:
            assert not [s for s in outcome.result.slots if s.error is not None and "internal error" in str(s.error)]
        return outcome

    @rule(mode=st.sampled_from(MODES), n=st.integers(1, 18))
    def run_with_token_fault(self, mode: str, n: int) -> None:
        self._run(f"{mode}:{n}")

    @rule(steps=st.integers(1, 14))
    def run_cancelled(self, steps: int) -> None:
        self._run(cancel_after=steps)

    @rule()
    def run_ca_refuses(self) -> None:
        self._run(refuse="the RA says no")

    @rule()
    def run_clean(self) -> None:
        """A run without faults finishes: every key renewed (or left alone when someone else changed it),
        or nothing is due; no journal is left."""
        outcome = self._run()
        if outcome.error is not None:
            assert isinstance(outcome.error, RenewalRefused) and "up to date" in str(outcome.error), repr(outcome.error)
        else:
            assert outcome.result.error is None or self.left_alone, repr(outcome.result.error)
            assert all(s.renewed or s.error is not None and s.error.code == "CHANGED" for s in outcome.result.slots)
        assert not list((self.dir / "state").glob("journal-*.json")), "a clean run left a journal"
        token = open_token(self.shim, self.hsm.label, self.hsm.pin)
        try:
            now_labels = {h.ref.label for h in token.certificates()}
        finally:
            token.close()
        assert self.labels <= now_labels
        if not self.left_alone:
            assert not [lab for lab in now_labels if lab.endswith(RENEWING)], "a new key of a finished update kept its label"

    @precondition(lambda self: bool(list((self.dir / "state").glob("journal-*.json"))))
    @rule(which=st.integers(0, 1))
    def someone_else_reissues(self, which: int) -> None:
        """The RA re-issues one key of the unfinished update (a new certificate for its old key)."""
        from card.journal import Journal
        journal = Journal.from_json(next((self.dir / "state").glob("journal-*.json")).read_text())
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

