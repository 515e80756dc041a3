"""A Hypothesis state machine over a real SoftHSM2 token: keys generated beside each other,
certificates written and replaced, keys relabelled and deleted, a certificate for another key
offered — and the token "pulled" (an error) at any object creation or destruction of a delete or a replace.

Invariant (issue 14): every certificate on the token has its matching private key — checked after
every step by pkcs11-tool (no certificate without a private key of its CKA_ID) and by a signature
of that key verified with the certificate; at the end the judge signs with every key itself.
P-256 keys (fast); 8 runs of 10 steps, about 10 s alone (17 s on a loaded machine); both mutations of the
order (key before certificate on delete, old before new on replace) fail it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from card.enrollment.local import LocalCA
from card.errors import CardError, TokenRemovedError
from card.pkcs11 import Pkcs11Token
from card.piv.model import KeyType
from card.token import KeyRef
from tests.pkcs11 import judge
from tests.pkcs11.softhsm import SoftHsm, clone_softhsm
from tests.pkcs11.tokens import issue_der, open_token


class PulledAt:
    """Makes the token fail as a pulled token would at the change after ``allowed`` object changes
    (``C_CreateObject``, ``C_DestroyObject``)."""

    def __init__(self, token: Pkcs11Token, allowed: int) -> None:
        self.channel, self.allowed = token._channel, allowed

    def _pulled(self, name: str) -> object:
        real = getattr(type(self.channel), name)

        def change(*args: object) -> object:
            if self.allowed <= 0:
                raise TokenRemovedError(f"the token went away during {name} (test)")
            self.allowed -= 1
            return real(self.channel, *args)

        return change

    def __enter__(self) -> None:
        for name in ("create", "destroy"):
            setattr(self.channel, name, self._pulled(name))

    def __exit__(self, *exc: object) -> None:
        for name in ("create", "destroy"):
            delattr(self.channel, name)


class TokenMachine(RuleBasedStateMachine):
    keys = Bundle("keys")

    def __init__(self, template: SoftHsm, ca: LocalCA) -> None:
        super().__init__()
        self.ca = ca
        self.hsm = clone_softhsm(template, Path(tempfile.mkdtemp(prefix="p11-machine-")))
        self.saved_conf = os.environ.get("SOFTHSM2_CONF")
        os.environ["SOFTHSM2_CONF"] = str(self.hsm.conf)
        self.token = open_token(self.hsm)
        self.next_id = 0x10
        self.certified = {c.key_id for c in template.certificates}
        """Keys whose certificate was written: each keeps a certificate until its key is deleted."""

    def teardown(self) -> None:
        try:
            pairs = judge.working_pairs(self.hsm)
            certificates = {c.ref.key_id for c in self.token.certificates()}
            assert certificates <= set(pairs), f"certificates without a working key: {certificates - set(pairs)}"
        finally:
            self.token.close()
            if self.saved_conf is None:
                os.environ.pop("SOFTHSM2_CONF", None)
            else:
                os.environ["SOFTHSM2_CONF"] = self.saved_conf

    def _ref(self, key_id: bytes) -> KeyRef:
        return KeyRef(key_id, f"key {key_id.hex()}")

    @initialize(target=keys)
    def the_fixtures_keys(self) -> object:
        return multiple(*sorted(self.certified))  # RSA-2048 at 01, P-256 at 02, each with its certificate

    @rule(target=keys)
    def generate(self) -> bytes:
        key_id = bytes([self.next_id])
        self.next_id += 1
        self.token.generate_key(self._ref(key_id), KeyType.ECCP256)
        return key_id

    @rule(key_id=keys, replacements=st.integers(0, 1))
    def write_certificate(self, key_id: bytes, replacements: int) -> None:
        public = self.token.public_key(self._ref(key_id))
        if public is None:
            return  # deleted since
        for days in range(365, 366 + replacements):
            self.token.write_certificate(self._ref(key_id), issue_der(self.ca, public, days), f"cert {key_id.hex()}")
        self.certified.add(key_id)

    @rule(key_id=keys, allowed=st.integers(0, 2))
    def replace_certificate_pulled(self, key_id: bytes, allowed: int) -> None:
        public = self.token.public_key(self._ref(key_id))
        if public is None or self.token.certificate(self._ref(key_id)).raw is None:
            return
        with PulledAt(self.token, allowed):
            try:
                self.token.write_certificate(self._ref(key_id), issue_der(self.ca, public, 500), "replaced")
            except TokenRemovedError:
                pass

    @rule(key_id=keys, allowed=st.integers(0, 3))
    def delete_pulled(self, key_id: bytes, allowed: int) -> None:
        with PulledAt(self.token, allowed):
            try:
                self.token.delete(self._ref(key_id))
            except TokenRemovedError:
                pass
        if self.token.certificate(self._ref(key_id)).raw is None:
            self.certified.discard(key_id)

    @rule(key_id=keys, label=st.sampled_from(["renewing", "superseded 2026-12-04", "Ærø ✓"]))
    def relabel(self, key_id: bytes, label: str) -> None:
        self.token.relabel(self._ref(key_id), label)

    @rule(key_id=keys, other=keys)
    def a_certificate_for_another_key_is_refused(self, key_id: bytes, other: bytes) -> None:
        mine, theirs = self.token.public_key(self._ref(key_id)), self.token.public_key(self._ref(other))
        if mine is None or theirs is None or key_id == other:
            return
        before = judge.objects(self.hsm)
        with pytest.raises(CardError, match="not for the key"):
            self.token.write_certificate(self._ref(key_id), issue_der(self.ca, theirs), "foreign")
        assert judge.objects(self.hsm) == before

    @invariant()
    def a_written_certificate_stays_until_its_key_is_deleted(self) -> None:
        on_token = {c.ref.key_id for c in self.token.certificates()}
        assert self.certified <= on_token, f"certificates lost: {self.certified - on_token}"

    @invariant()
    def every_certificate_has_its_matching_private_key(self) -> None:
        assert judge.certificates_without_key(self.hsm) == []
        for item in self.token.certificates():
            assert item.certificate is not None and item.has_private_key, item
            key_type = KeyType.of(item.certificate.public_key())
            signature = self.token.sign(item.ref, key_type, b"invariant")
            assert judge.verifies(item.certificate, signature, b"invariant"), item.ref


def test_every_certificate_keeps_its_private_key(softhsm_template: SoftHsm, ca: LocalCA) -> None:
    run_state_machine_as_test(lambda: TokenMachine(softhsm_template, ca),
                              settings=settings(max_examples=8, stateful_step_count=10, deadline=None,
                                                derandomize=True, database=None))
