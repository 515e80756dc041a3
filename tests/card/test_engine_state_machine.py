"""Issue 11: a state-machine property test of the renewal engine over the in-process card.

Hypothesis drives renewals on one virtual card (EC P-256, our embedded CA) and interleaves faults:
the card pulled at APDU k, the process stopped at progress step s (an exception the engine cannot
catch, raised from the reporter), the CA refusing / unavailable / answering late (it issued, the
answer was lost) / returning a wrong certificate (another SAN, a CA certificate, another key, valid
past the card), the disk full or read-only from write n on (journal and audit writes raise
ENOSPC / EROFS / EACCES), the RA re-issuing or another tool renewing a slot between runs, and a
corrupt journal.

Checked after every step (``@invariant``), from the emulator's own state:

- each slot's certificate matches its private key (a test signature made with the card's key and
  verified with the certificate) and is the one it had, a renewal our CA issued for that slot, or one
  someone else wrote — or the slot is mid-renewal and the journal holds what finishes it (the key
  it generated, or "generating"), or its journal was corrupted while it was mid-renewal (then only
  the RA can help; the model remembers that);

and after every run:

- no run destroys a key whose certificate was valid at the run's start unless that run then writes
  its renewed certificate, or it was interrupted by a fault and left the journal that finishes it;
- a run without faults ends every renewal it can: afterwards every slot works, nothing is due
  (unless a slot was lost to a corrupt journal), and no journal is left.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from card import atomic
from card.certificates import decode_certificate_object, encode_certificate_object, fingerprint, verify_signature
from card.config import Settings
from card.emulator.card import CardFaults, SoftPivCard, install_key
from card.emulator.create import create_card_state
from card.enrollment.base import IssuedCertificate, IssuerRejected, IssuerUnavailable
from card.enrollment.local import LocalCA, init_ca
from card.errors import CardError
from card.journal import AuditLog, Journal, JournalStore
from card.piv import KeyType, PivSession, Slot
from card.secret import Secret
from card.renewal import RenewalContext, renew

PIN = "123456"
SLOTS = (Slot.AUTHENTICATION, Slot.SIGNATURE)
_BASE = Path(tempfile.mkdtemp(prefix="cardrenew-sm-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
"""On tmpfs where there is one: the CA ledger's and the journal's syncs cost nothing (the property is
about the engine's decisions, not the disk's durability)."""
init_ca(_BASE / "ca", "cardrenew State-Machine CA")
CA = LocalCA(_BASE / "ca")
OTHER_CA_DIR = _BASE / "other-ca"
init_ca(OTHER_CA_DIR, "Another Tool's CA")
OTHER_CA = LocalCA(OTHER_CA_DIR)


class Stopped(BaseException):
    """The process stops here (SIGKILL-like: nothing in the engine catches it)."""


class ControlledCA:
    """Our CA with a switch: ``ok``, ``refuse``, ``refuse-issue``, ``down``, ``late`` (issued, answer
    lost), ``wrong-san``, ``ca-true``, ``wrong-key``, ``too-long`` (valid past the card's expiry)."""

    name = "controlled CA"

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.cancel = threading.Event()  # the Issuer protocol's cancellation token

    def ca_certificates(self) -> list[x509.Certificate]:
        if self.mode == "down":
            raise IssuerUnavailable("connection refused")
        return CA.ca_certificates()

    def supported_key_types(self) -> set[str]:
        return CA.supported_key_types()

    def authorize_renewal(self, slot, old, sign):  # type: ignore[no-untyped-def]
        if self.mode == "refuse":
            raise IssuerRejected("renewals suspended by the RA")
        return CA.authorize_renewal(slot, old, sign)

    def request_signer_slot(self, slot):  # type: ignore[no-untyped-def]
        return None

    def challenge_password(self, grant):  # type: ignore[no-untyped-def]
        return None

    def issue(self, grant, csr, new_key, card_key=None, *, request_signer=None, not_after_limit=None):  # type: ignore[no-untyped-def]
        if self.mode in ("refuse", "refuse-issue"):
            raise IssuerRejected("the CA refused this request")
        if self.mode == "down":
            raise IssuerUnavailable("connection refused")
        if self.mode == "late":
            CA.issue(grant, csr, new_key)
            raise IssuerUnavailable("the answer was lost")
        if self.mode == "ok":
            return CA.issue(grant, csr, new_key)
        now = dt.datetime.now(dt.timezone.utc)
        key = ec.generate_private_key(ec.SECP256R1()).public_key() if self.mode == "wrong-key" else new_key
        not_after = now + dt.timedelta(days=6 * 365 if self.mode == "too-long" else 700)
        builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(CA.cert.subject).public_key(key)
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(not_after)
                   .add_extension(x509.KeyUsage(True, self.mode == "ca-true" or grant.slot == "9C", False, False,
                                                False, self.mode == "ca-true", False, False, False), True)
                   .add_extension(x509.BasicConstraints(ca=self.mode == "ca-true", path_length=None), True))
        names = [x509.RFC822Name("admin@example.org" if self.mode == "wrong-san" else "alex.example@example.org")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
        return IssuedCertificate(builder.sign(CA.key, hashes.SHA384()), (CA.cert,))


class DiskFault:
    """From the ``n``-th change of a run on, under the state directory (journal and audit log: writes,
    appends, renames, removals), every change fails with ``code`` — through the one fault point in
    :mod:`card.atomic`."""

    def __init__(self, n: int, code: int, under: Path) -> None:
        self.fault = atomic.WriteFault(at=n, error=code, under=under)
        self._previous: atomic.WriteFault | None = None

    def __enter__(self) -> DiskFault:
        self._previous = atomic.set_write_fault(self.fault)
        return self

    def __exit__(self, *exc: object) -> None:
        atomic.set_write_fault(self._previous)


class StoppingReporter:
    """Raises :class:`Stopped` at the ``at``-th progress step (0: never)."""

    def __init__(self, at: int) -> None:
        self.at, self.count = at, 0

    def step(self, slot, step, detail=""):  # type: ignore[no-untyped-def]
        self.count += 1
        if self.count == self.at:
            raise Stopped()

    def slot_finished(self, slot, result):  # type: ignore[no-untyped-def]
        pass


FAULTS = st.one_of(
    st.just(("none", 0, 0)),
    st.tuples(st.just("pull"), st.integers(0, 45), st.just(0)),
    st.tuples(st.just("stop"), st.integers(1, 24), st.just(0)),
    st.tuples(st.just("disk"), st.integers(1, 12), st.sampled_from([errno.ENOSPC, errno.EROFS, errno.EACCES])),
)
CA_MODES = st.sampled_from(["ok", "ok", "ok", "refuse", "refuse-issue", "down", "late", "wrong-san", "ca-true",
                            "wrong-key", "too-long"])
CORRUPTIONS = st.sampled_from([b"{\"card_id\": ", b"{}", b"\x00" * 64, b"null", b"[]", b"{\"slots\": []}",
                                b"\xff\xfe\x00junk"])


def _slot_key(card: SoftPivCard, slot: Slot) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(card.state.keys[slot.hex].private_pem.encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _slot_cert(card: SoftPivCard, slot: Slot) -> x509.Certificate | None:
    value = card.state.objects.get(slot.object_id.hex().upper())
    return decode_certificate_object(bytes.fromhex(value)) if value else None


def _works(card: SoftPivCard, slot: Slot) -> bool:
    """A test signature with the card's key verifies with the slot's certificate."""
    cert = _slot_cert(card, slot)
    if cert is None:
        return False
    message = b"test signature " + os.urandom(8)
    return verify_signature(cert.public_key(), _slot_key(card, slot).sign(message, ec.ECDSA(hashes.SHA256())), message)


_LEDGER: list[object] = []


def _renewed_by_our_ca(slot: Slot, cert: x509.Certificate) -> bool:
    """Our CA's ledger says it issued ``cert`` under a renewal grant for ``slot``."""
    if not _LEDGER:
        _LEDGER.append(CA._db())
    row = _LEDGER[0].execute("SELECT 1 FROM grants WHERE slot = ? AND issued = ?",  # type: ignore[attr-defined]
                             (slot.hex, cert.public_bytes(serialization.Encoding.DER))).fetchone()
    return row is not None


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(dir=_BASE))
        self.card = SoftPivCard(create_card_state(CA, key_type=KeyType.ECCP256))
        self.settings = Settings(state_dir=self.dir / "state")
        self.journals = JournalStore(self.settings.state_dir, fallback=self.dir / "fallback")
        self.audit = AuditLog(self.settings.state_dir / "audit.log")
        self.foreign: dict[Slot, set[str]] = {slot: {fingerprint(_slot_cert(self.card, slot))} for slot in SLOTS}  # type: ignore[arg-type]
        """Certificates a slot may hold that our renewals did not write: the original, and the RA's/other tools'."""
        self.lost: set[Slot] = set()
        self.runs = 0

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------
    def _journal(self) -> Journal | None:
        """The journal the next run would resume from: the newer of the state directory's and the
        fallback directory's (JournalStore's rule), read without side effects."""
        card_id = self._card_id()
        found: list[tuple[float, Journal]] = []
        for path in (self.journals.path_for(card_id), self.journals.fallback_path_for(card_id)):
            try:
                found.append((path.stat().st_mtime, Journal.from_json(path.read_text(encoding="utf-8"))))  # type: ignore[union-attr]
            except (OSError, ValueError, AttributeError):
                continue
        return max(found, key=lambda entry: entry[0])[1] if found else None

    def _card_id(self) -> str:
        session = PivSession(self.card)
        chuid = session.read_chuid() if self.card.present else None
        assert chuid is not None
        return chuid.guid_hex

    def _resumable(self, slot: Slot) -> bool:
        """The journal holds what finishes this slot: the key now in it, or "generating" (key unknown)."""
        journal = self._journal()
        sj = journal.slots.get(slot.hex) if journal is not None else None
        if sj is None or not sj.in_progress:
            return False
        if sj.step == "generating" or not sj.public_key_pem:
            return True
        pub = _slot_key(self.card, slot).public_key().public_bytes(serialization.Encoding.PEM,
                                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        return pub.decode() == sj.public_key_pem

    def _run(self, fault: tuple[str, int, int], ca_mode: str) -> BaseException | None:
        self.runs += 1
        kind, arg, code = fault
        self.card.power_on()  # a new process: a fresh card session
        if kind == "pull":
            self.card.faults = CardFaults(drop_after_apdus=self.card.apdu_count + arg)
        ctx = RenewalContext(self.settings, ControlledCA(ca_mode), self.journals, self.audit,  # type: ignore[arg-type]
                             reporter=StoppingReporter(arg if kind == "stop" else 0), issuer_retry_delays_s=())
        outcome: BaseException | None = None
        try:
            if kind == "disk":
                with DiskFault(arg, code, self.settings.state_dir):
                    renew(PivSession(self.card), ctx, Secret(PIN))
            else:
                renew(PivSession(self.card), ctx, Secret(PIN))
        except (Exception, Stopped) as exc:  # noqa: BLE001 - every outcome is judged by the card's state
            outcome = exc
        finally:
            if not self.card.present:
                self.card.insert()
            self.card.faults = CardFaults()
        return outcome

    # -- rules -----------------------------------------------------------------------------
    @rule(fault=FAULTS, ca_mode=CA_MODES)
    def renew_with_faults(self, fault: tuple[str, int, int], ca_mode: str) -> None:
        before = {slot: (self.card.state.keys[slot.hex].private_pem, _works(self.card, slot)
                         and _slot_cert(self.card, slot).not_valid_after_utc > dt.datetime.now(dt.timezone.utc))  # type: ignore[union-attr]
                  for slot in SLOTS}
        self._run(fault, ca_mode)
        faulty = fault[0] != "none" or ca_mode != "ok"
        for slot in SLOTS:
            key_before, was_working = before[slot]
            if not was_working or self.card.state.keys[slot.hex].private_pem == key_before:
                continue
            cert = _slot_cert(self.card, slot)
            wrote_renewal = cert is not None and _works(self.card, slot) and _renewed_by_our_ca(slot, cert)
            assert wrote_renewal or (faulty and self._resumable(slot)), (
                f"run {self.runs} ({fault}, CA {ca_mode}) destroyed slot {slot.hex}'s working key without "
                "writing its renewed certificate or journalling how to finish")

    @rule()
    def renew_cleanly(self) -> None:
        outcome = self._run(("none", 0, 0), "ok")
        assert outcome is None or isinstance(outcome, CardError), f"a clean run failed with {outcome!r}"
        for slot in SLOTS:
            assert slot in self.lost or _works(self.card, slot), f"slot {slot.hex} not working after a clean run"
        assert self._journal() is None, f"a clean run left a journal ({outcome!r})"
        if not self.lost:
            soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=self.settings.window_days)
            due = [s.hex for s in SLOTS if _slot_cert(self.card, s).not_valid_after_utc <= soon]  # type: ignore[union-attr]
            assert not due, f"a clean run left {due} due ({outcome!r})"

    @rule(slot=st.sampled_from(SLOTS), other_tool=st.booleans())
    def someone_else_reissues(self, slot: Slot, other_tool: bool) -> None:
        """The RA re-issues the slot (our CA), or another tool renews it (another CA): new key, valid certificate."""
        old = _slot_cert(self.card, slot)
        subject = old.subject if old is not None else x509.Name.from_rfc4514_string("CN=Alex Example")
        key = ec.generate_private_key(ec.SECP256R1())
        install_key(self.card.state, slot, key, KeyType.ECCP256)
        now = dt.datetime.now(dt.timezone.utc)
        issuer = OTHER_CA if other_tool else CA
        cert = issuer.issue_initial(subject, key.public_key(), slot.hex, now - dt.timedelta(hours=1),
                                    now + dt.timedelta(days=700), "alex.example@example.org")
        self.card.state.objects[slot.object_id.hex().upper()] = encode_certificate_object(
            cert.public_bytes(serialization.Encoding.DER)).hex().upper()
        self.foreign[slot].add(fingerprint(cert))
        self.lost.discard(slot)

    @rule(junk=CORRUPTIONS)
    def corrupt_the_journal(self, junk: bytes) -> None:
        card_id = self._card_id()
        paths = [p for p in (self.journals.path_for(card_id), self.journals.fallback_path_for(card_id))
                 if p is not None and p.exists()]
        if not paths:
            return
        for path in paths:
            path.write_bytes(junk)
        for slot in SLOTS:  # a slot caught mid-renewal cannot be finished without its journal: the RA must act
            if not _works(self.card, slot):
                self.lost.add(slot)

    # -- invariant -------------------------------------------------------------------------
    @invariant()
    def every_slot_is_sound(self) -> None:
        for slot in SLOTS:
            cert = _slot_cert(self.card, slot)
            if cert is not None and _works(self.card, slot):
                assert fingerprint(cert) in self.foreign[slot] or _renewed_by_our_ca(slot, cert), (
                    f"slot {slot.hex} holds a certificate nobody meant for it: {cert.subject.rfc4514_string()}, "
                    f"issuer {cert.issuer.rfc4514_string()}")
                continue
            assert slot in self.lost or self._resumable(slot), (
                f"slot {slot.hex}: its certificate does not match its key and no journal can finish it")


_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _run(max_examples: int, steps: int) -> None:
    machine = EngineMachine
    machine.TestCase.settings = settings(max_examples=max_examples, stateful_step_count=steps, **_SETTINGS)
    machine.TestCase().runTest()


def test_engine_state_machine_quick() -> None:
    """The default suite: a few hundred interleavings (the sweep below runs 2,000)."""
    _run(int(os.environ.get("CARDRENEW_SM_EXAMPLES", "150")), 8)


@pytest.mark.sweep
def test_engine_state_machine_sweep() -> None:
    """Issue 11: at least 2,000 examples in CI (run by .ci/run's ``-m sweep`` step)."""
    _run(2000, 10)


def test_engine_state_machine_key_mismatch_sequence() -> None:
    """The sequence the state machine found against d6d30eb (reverted in 3a2259d), replayed every run:
    the CA refuses to issue (9A has its new key, 9C untouched), the journal is corrupted (9A's key no
    longer matches its certificate, only the RA can help), the CA refuses again, then a clean run.
    Renewing 9C after 9A's KEY-MISMATCH left 9C mid-renewal behind a 9A that could never be finished:
    the engine must stop before 9C, so 9C keeps a working key throughout."""
    machine = EngineMachine()
    try:
        machine.every_slot_is_sound()
        machine.renew_with_faults(("none", 0, 0), "refuse-issue")
        machine.every_slot_is_sound()
        machine.corrupt_the_journal(b"{}")
        machine.every_slot_is_sound()
        machine.renew_with_faults(("none", 0, 0), "refuse-issue")
        machine.every_slot_is_sound()
        machine.renew_cleanly()
        machine.every_slot_is_sound()
        assert _works(machine.card, Slot.SIGNATURE)
    finally:
        machine.teardown()
