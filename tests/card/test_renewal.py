"""The renewal engine on the in-process card: the safety rule, refusals, journal and resume."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from card.certificates import key_matches
from card.config import Settings
from card.emulator.card import CardFaults, SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.base import IssuedCertificate, IssuerRejected
from card.enrollment.local import LocalCA
from card.errors import CardRemovedError, InvalidPinError
from card.journal import AuditLog, JournalStore
from card.piv import DEFAULT_MANAGEMENT_KEY, KeyType, PivSession, Slot
from card.renewal import (
    CertificateMismatchError,
    RenewalContext,
    RenewalRefused,
    UpdateCheck,
    read_card,
    renew,
    update_check,
)
from card.secret import Secret

PIN = "123456"


def context(tmp_path: Path, issuer: object) -> RenewalContext:
    settings = Settings(state_dir=tmp_path / "state")
    return RenewalContext(settings, issuer, JournalStore(settings.state_dir), AuditLog(settings.state_dir / "audit.log"))  # type: ignore[arg-type]


def card_public_key(card: SoftPivCard, slot: Slot) -> object:
    key = serialization.load_pem_private_key(card.state.keys[slot.hex].private_pem.encode(), None)
    return key.public_key()


def snapshot(card: SoftPivCard) -> tuple[dict[str, str], dict[str, str]]:
    return ({k: v.private_pem for k, v in card.state.keys.items()}, dict(card.state.objects))


def certificate_on(card: SoftPivCard, slot: Slot) -> x509.Certificate:
    cert = PivSession(card).read_certificate(slot).certificate
    assert cert is not None
    return cert


@pytest.mark.parametrize("key_type", [KeyType.RSA2048, KeyType.ECCP256])
def test_renews_both_slots_with_new_keys_from_the_ca(make_card, ca: LocalCA, tmp_path: Path, key_type: KeyType) -> None:  # type: ignore[no-untyped-def]
    card = make_card(key_type=key_type)
    old = {slot: certificate_on(card, slot) for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE)}
    result = renew(PivSession(card), context(tmp_path, ca), Secret(PIN))
    assert result.ok, result
    now = dt.datetime.now(dt.timezone.utc)
    for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
        new = certificate_on(card, slot)
        assert new.serial_number != old[slot].serial_number
        assert new.public_key() != old[slot].public_key()
        assert key_matches(new, card_public_key(card, slot))  # certificate matches the key in the slot
        assert new.subject == old[slot].subject
        new.verify_directly_issued_by(ca.cert)
        assert 728 <= (new.not_valid_after_utc - now).days <= 730
    # nothing left to resume, and an audit line per slot with no secret in it
    assert not list((tmp_path / "state").glob("journal-*.json"))
    audit = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    assert [a["outcome"] for a in audit] == ["renewed", "renewed"]


def test_wrong_pin_shows_tries_left_and_changes_nothing(make_card, ca: LocalCA, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    card = make_card()
    before = snapshot(card)
    with pytest.raises(InvalidPinError) as exc:
        renew(PivSession(card), context(tmp_path, ca), Secret("654321"))
    assert exc.value.attempts_remaining == 2
    assert snapshot(card) == before


def test_not_due_changes_nothing_and_names_the_next_date(make_card, ca: LocalCA, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    card = make_card(expires_in_days=200)
    before = snapshot(card)
    summary = read_card(PivSession(card), Settings())
    assert update_check(summary) is UpdateCheck.UP_TO_DATE
    expected = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=200 - 90)).date()
    assert abs((summary.next_renewal_date(90) - expected).days) <= 1
    with pytest.raises(RenewalRefused) as exc:
        renew(PivSession(card), context(tmp_path, ca), Secret(PIN))
    assert "up to date" in str(exc.value) and "next renewal from" in str(exc.value)
    assert snapshot(card) == before


def test_expired_certificate_is_refused_with_ra_contact(make_card, ca: LocalCA, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    card = make_card(expires_in_days=-1)
    before = snapshot(card)
    assert update_check(read_card(PivSession(card), Settings())) is UpdateCheck.EXPIRED
    with pytest.raises(RenewalRefused) as exc:
        renew(PivSession(card), context(tmp_path, ca), Secret(PIN))
    assert "expired" in str(exc.value)
    assert "Registration Authority" in exc.value.next_step
    assert snapshot(card) == before


def test_ca_that_refuses_changes_nothing(make_card, ca_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    card = make_card()
    before = snapshot(card)
    refusing = LocalCA(ca_dir, refuse_reason="renewals suspended by the RA")
    with pytest.raises(IssuerRejected) as exc:
        renew(PivSession(card), context(tmp_path, refusing), Secret(PIN))
    assert "renewals suspended" in str(exc.value)
    assert snapshot(card) == before  # no key generated, no object written


class WrongKeyCA:
    """Wraps the CA and returns a certificate for some other key (a misbehaving CA)."""

    def __init__(self, ca: LocalCA) -> None:
        self.ca, self.name = ca, "wrong-key CA"
        self.cancel = threading.Event()  # the Issuer protocol's cancellation token

    def ca_certificates(self):  # type: ignore[no-untyped-def]
        return self.ca.ca_certificates()

    def supported_key_types(self):  # type: ignore[no-untyped-def]
        return self.ca.supported_key_types()

    def authorize_renewal(self, *args):  # type: ignore[no-untyped-def]
        return self.ca.authorize_renewal(*args)

    def request_signer_slot(self, slot):  # type: ignore[no-untyped-def]
        return None

    def challenge_password(self, grant):  # type: ignore[no-untyped-def]
        return None

    def issue(self, grant, csr, new_key, card_key=None, *, request_signer=None, not_after_limit=None):  # type: ignore[no-untyped-def]
        other = ec.generate_private_key(ec.SECP256R1()).public_key()
        now = dt.datetime.now(dt.timezone.utc)
        cert = self.ca.issue_initial(csr.subject, other, grant.slot, now, now + dt.timedelta(days=700))
        return IssuedCertificate(cert, (self.ca.cert,))


def test_certificate_for_the_wrong_key_is_never_written(make_card, ca: LocalCA, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    card = make_card(key_type=KeyType.ECCP256)
    before_objects = dict(card.state.objects)
    before_9c_key = card.state.keys["9C"].private_pem
    result = renew(PivSession(card), context(tmp_path, WrongKeyCA(ca)), Secret(PIN))
    assert not result.ok
    assert isinstance(result.slots[0].error, CertificateMismatchError)
    assert "different key" in str(result.slots[0].error)
    assert "not attempted" in str(result.slots[1].error)
    assert card.state.objects == before_objects  # no certificate object was written
    assert card.state.keys["9C"].private_pem == before_9c_key  # the second slot's key was not touched
    assert result.journal_kept


def test_card_pulled_mid_write_leaves_a_journal_that_resumes(make_card, ca: LocalCA, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    card = make_card(faults=CardFaults(drop_at_put_data=2))  # pulled while 9C's certificate is written
    ctx = context(tmp_path, ca)
    result = renew(PivSession(card), ctx, Secret(PIN))
    assert result.slots[0].renewed
    assert isinstance(result.slots[1].error, CardRemovedError)
    assert result.journal_kept
    journal = json.loads(next((tmp_path / "state").glob("journal-*.json")).read_text())
    assert journal["slots"]["9C"]["step"] == "issued" and journal["slots"]["9C"]["certificate_pem"]
    issued_9c = x509.load_pem_x509_certificate(journal["slots"]["9C"]["certificate_pem"].encode())

    with pytest.raises(CardRemovedError):
        read_card(PivSession(card), ctx.settings)
    card.insert()
    summary = read_card(PivSession(card), ctx.settings, journals=ctx.journals)
    assert update_check(summary) is UpdateCheck.RESUME
    resumed = renew(PivSession(card), ctx, Secret(PIN))
    assert resumed.ok and resumed.reference == result.reference
    # the certificate already issued was written without asking the CA again
    assert certificate_on(card, Slot.SIGNATURE) == issued_9c
    for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
        assert key_matches(certificate_on(card, slot), card_public_key(card, slot))
    assert not list((tmp_path / "state").glob("journal-*.json"))


def test_pull_sweep_every_apdu_index_ends_renewed(ca: LocalCA, tmp_path: Path) -> None:
    """Pull the card before each command of a full renewal; after re-insertion and resume,
    both slots hold a certificate matching their key, and finally both are renewed."""
    reference = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256))
    assert renew(PivSession(reference), context(tmp_path / "ref", ca), Secret(PIN)).ok
    total = reference.apdu_count
    assert total > 20
    outcomes: dict[str, int] = {}
    for index in range(total):
        card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256), faults=CardFaults(drop_after_apdus=index))
        ctx = context(tmp_path / f"run{index}", ca)
        try:
            first = renew(PivSession(card), ctx, Secret(PIN))
            outcomes["reported"] = outcomes.get("reported", 0) + (0 if first.ok else 1)
        except CardRemovedError:
            outcomes["raised"] = outcomes.get("raised", 0) + 1
        card.insert()
        for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
            s = PivSession(card)
            s.select()
            cert = s.read_certificate(slot).certificate
            assert cert is not None
            # every slot either still matches its certificate, or is mid-renewal with a journal
            if not key_matches(cert, card_public_key(card, slot)):
                assert list(ctx.journals.directory.glob("journal-*.json")), f"index {index}: slot {slot.hex} broken, no journal"
        final = renew(PivSession(card), ctx, Secret(PIN))
        assert final.ok, f"index {index}: {final}"
        for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
            assert key_matches(certificate_on(card, slot), card_public_key(card, slot))
    assert sum(outcomes.values()) == total


def test_no_secret_reaches_journal_audit_or_trace(ca: LocalCA, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:

    from card.apdu import TRAFFIC

    pin = "739146"
    card = SoftPivCard(create_card_state(ca, pin=pin), faults=CardFaults(drop_at_put_data=2))
    ctx = context(tmp_path, ca)
    with caplog.at_level(TRAFFIC):
        result = renew(PivSession(card), ctx, Secret(pin))
    assert result.journal_kept
    texts = [p.read_text() for p in (tmp_path / "state").iterdir() if p.is_file()] + [caplog.text]
    assert "APDU" in caplog.text or "> 00 A4" in caplog.text
    for text in texts:
        for secret in (pin, pin.encode().hex(), pin.encode().hex(" ").upper(), DEFAULT_MANAGEMENT_KEY.hex(),
                       DEFAULT_MANAGEMENT_KEY.hex(" ").upper()):
            assert secret not in text


def test_blocked_card_is_still_read_and_renewal_says_whom_to_contact(make_card, ca: LocalCA, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from card.errors import PinBlockedError

    card = make_card()
    card.state.pin_retries = 0
    summary = read_card(PivSession(card), Settings())
    assert summary.pin_retries == 0 and summary.holder == "Alex Example"
    with pytest.raises(PinBlockedError) as exc:
        renew(PivSession(card), context(tmp_path, ca), Secret(PIN))
    assert "Registration Authority" in exc.value.next_step


def test_service_drops_the_connection_after_a_renewal_that_saw_the_card_pulled(ca: LocalCA, tmp_path: Path) -> None:
    from card.service import CardService

    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256), faults=CardFaults(drop_at_put_data=2))
    opened: list[SoftPivCard] = []

    def factory() -> SoftPivCard:
        opened.append(card)
        return card

    service = CardService(factory)
    try:
        result = service.submit(lambda s: renew(s, context(tmp_path, ca), Secret(PIN))).result()
        assert isinstance(result.slots[1].error, CardRemovedError)
        card.insert()
        assert service.submit(lambda s: read_card(s, Settings()).holder).result() == "Alex Example"
        assert len(opened) == 2  # a fresh connection after the pull, not the dead one
    finally:
        service.shutdown()


class FlakyCA(WrongKeyCA):
    """The CA is unreachable for the first ``failures`` issue calls, then works."""

    def __init__(self, ca: LocalCA, failures: int) -> None:
        super().__init__(ca)
        self.failures, self.calls = failures, 0

    def issue(self, grant, csr, new_key, card_key=None, *, request_signer=None, not_after_limit=None):  # type: ignore[no-untyped-def]
        from card.enrollment.base import IssuerUnavailable

        self.calls += 1
        if self.calls <= self.failures:
            raise IssuerUnavailable("connection refused")
        return self.ca.issue(grant, csr, new_key)


def test_unavailable_ca_is_retried_with_back_off_then_resumable(make_card, ca: LocalCA, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from card.enrollment.base import IssuerUnavailable

    card = make_card(key_type=KeyType.ECCP256)
    ctx = dataclasses.replace(context(tmp_path, FlakyCA(ca, failures=2)), issuer_retry_delays_s=(0.01, 0.01))
    assert renew(PivSession(card), ctx, Secret(PIN)).ok  # two failures absorbed by the retries

    card = make_card(key_type=KeyType.ECCP256)
    down = FlakyCA(ca, failures=10**6)
    ctx = dataclasses.replace(context(tmp_path / "down", down), issuer_retry_delays_s=(0.01, 0.01))
    result = renew(PivSession(card), ctx, Secret(PIN))
    assert down.calls == 3  # first try + two retries, then the error path
    assert isinstance(result.slots[0].error, IssuerUnavailable) and result.journal_kept
    assert "not attempted" in str(result.slots[1].error)  # 9C's working key was left alone
    down.failures = 0  # the CA is back: the next run finishes with the grants it already holds
    assert renew(PivSession(card), ctx, Secret(PIN)).ok


def test_watcher_reports_a_pull_and_reinsert_shorter_than_its_poll(make_card) -> None:  # type: ignore[no-untyped-def]
    import threading

    from card.service import CardService

    card = make_card()
    events: list[bool] = []
    seen = threading.Event()
    service = CardService(lambda: card, card.presence, poll_interval_s=0.05)

    def record(present: bool) -> None:
        events.append(present)
        seen.set()

    try:
        service.watch(record)
        assert seen.wait(2) and events == [True]
        seen.clear()
        card.remove()
        card.insert()  # out and back in between two polls
        assert seen.wait(2)
        for _ in range(40):
            if len(events) >= 3:
                break
            threading.Event().wait(0.05)
        assert events == [True, False, True]
    finally:
        service.shutdown()


class BadCertificateCA(WrongKeyCA):
    """Issues for the right key but gets one other thing wrong: ``subject``, ``issuer`` or ``expired``."""

    def __init__(self, ca: LocalCA, fault: str, other_ca: LocalCA | None = None) -> None:
        super().__init__(ca)
        self.fault, self.other_ca = fault, other_ca

    def issue(self, grant, csr, new_key, card_key=None, *, request_signer=None, not_after_limit=None):  # type: ignore[no-untyped-def]
        from cryptography.x509.oid import NameOID

        now = dt.datetime.now(dt.timezone.utc)
        subject, signer, not_after = csr.subject, self.ca, now + dt.timedelta(days=700)
        if self.fault == "subject":
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Somebody Else")])
        elif self.fault == "issuer":
            signer = self.other_ca
        elif self.fault == "expired":
            not_after = now - dt.timedelta(days=1)
        emails = [n.value for ext in csr.extensions if isinstance(ext.value, x509.SubjectAlternativeName)
                  for n in ext.value if isinstance(n, x509.RFC822Name)]
        cert = signer.issue_initial(subject, new_key, grant.slot, now - dt.timedelta(days=30), not_after,
                                    emails[0] if emails else None)
        return IssuedCertificate(cert, (self.ca.cert,))


@pytest.mark.parametrize("fault,message", [("subject", "another subject"), ("issuer", "does not chain"),
                                           ("expired", "not valid now")])
def test_bad_certificates_from_the_ca_are_never_written(make_card, ca: LocalCA, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                        fault: str, message: str) -> None:
    from card.enrollment.local import init_ca

    init_ca(tmp_path / "rogue", "Rogue CA")
    card = make_card(key_type=KeyType.ECCP256)
    before_objects = dict(card.state.objects)
    ctx = context(tmp_path, BadCertificateCA(ca, fault, LocalCA(tmp_path / "rogue")))
    result = renew(PivSession(card), ctx, Secret(PIN))
    assert isinstance(result.slots[0].error, CertificateMismatchError)
    assert message in str(result.slots[0].error)
    assert "contact your Registration Authority" in result.slots[0].error.next_step
    assert card.state.objects == before_objects
    journal = json.loads(next((tmp_path / "state").glob("journal-*.json")).read_text())
    assert journal["slots"]["9A"]["grant"] and journal["slots"]["9A"]["step"] == "generated"
    # once the CA behaves, the same grant and key finish the job
    assert renew(PivSession(card), context(tmp_path, ca), Secret(PIN)).ok


def test_audit_log_is_private_and_listed_by_the_cli(make_card, ca: LocalCA, capsys) -> None:  # type: ignore[no-untyped-def]
    import os
    import stat

    from tui.cli import main

    settings = Settings()  # state under $XDG_STATE_HOME/cardrenew (a temp dir in tests), as the CLI uses
    ctx = RenewalContext(settings, ca, JournalStore(settings.state_dir), AuditLog(settings.state_dir / "audit.log"))
    assert renew(PivSession(make_card(key_type=KeyType.ECCP256)), ctx, Secret(PIN)).ok
    assert stat.S_IMODE(os.stat(settings.state_dir / "audit.log").st_mode) == 0o600
    assert main(["audit"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["slot"] for e in lines] == ["9A", "9C"] and all(e["reference"].startswith("CR-") for e in lines)
    assert {e["outcome"] for e in lines} == {"renewed"}


def test_slot_with_junk_is_reported_not_renewed_never_skipped(make_card, ca: LocalCA, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    card = make_card(key_type=KeyType.ECCP256)
    card.state.objects["5FC105"] = "700468656A0A710100"  # F15: 9A holds junk, 9C is due
    result = renew(PivSession(card), context(tmp_path, ca), Secret(PIN))
    assert not result.ok
    by_slot = {r.slot: r for r in result.slots}
    assert by_slot[Slot.SIGNATURE].renewed
    assert not by_slot[Slot.AUTHENTICATION].renewed
    assert "unreadable object" in str(by_slot[Slot.AUTHENTICATION].error)
    assert "Registration Authority" in by_slot[Slot.AUTHENTICATION].error.next_step


def test_ca_refusal_carries_a_reference_for_the_ra(make_card, ca_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx = context(tmp_path, LocalCA(ca_dir, refuse_reason="suspended"))
    with pytest.raises(IssuerRejected) as exc:
        renew(PivSession(make_card()), ctx, Secret(PIN))
    assert exc.value.reference and exc.value.reference.startswith("CR-")
    audit = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    assert audit[-1]["outcome"] == "refused" and audit[-1]["reference"] == exc.value.reference


def test_renewal_sends_each_command_once_and_verifies_right_before_every_9c_operation(
        ca: LocalCA, tmp_path: Path) -> None:
    """Issue 7: one 9B login per renewal, no empty VERIFY, a VERIFY directly before each of the three
    9C private-key operations and no other VERIFY (the preflight PIN check is the first of them);
    a summary read in the same transaction is not read again."""
    card = SoftPivCard(create_card_state(ca))
    session = PivSession(card)
    summary = read_card(session, Settings(), pin_retries=False)
    start = len(card.trace)
    assert renew(session, context(tmp_path, ca), Secret(PIN), summary=summary).ok
    trace = [apdu for apdu, _ in card.trace[start:]]
    assert not [a for a in trace if a[1] == 0xA4 or (a[1] == 0xCB and a[5:10] == bytes.fromhex("5C035FC102"))], \
        "the card was read again"
    assert sum(1 for a in trace if a[1] == 0x87 and a[3] == 0x9B) == 2  # witness + challenge, once
    verifies = [i for i, a in enumerate(trace) if a[1] == 0x20]
    assert all(len(trace[i]) > 5 for i in verifies), "an empty VERIFY (tries left) was sent"
    ops_9c = [i for i, a in enumerate(trace) if a[1] == 0x87 and a[3] == 0x9C and not a[0] & 0x10]
    first_blocks = [i for i in range(len(trace)) if trace[i][1] == 0x87 and trace[i][3] == 0x9C
                    and (i == 0 or not (trace[i - 1][1] == 0x87 and trace[i - 1][0] & 0x10))]
    assert len(ops_9c) == 3 and [i - 1 for i in first_blocks] == verifies


def test_a_renewal_asks_the_card_for_metadata_only_for_the_management_key(ca: LocalCA, tmp_path: Path) -> None:
    """Issue 7 / issue 13 (the APDU count per renewal may not grow): the engine's own read of the card
    sends no GET METADATA per slot (status's key check, 0f82c9e, added two to every renewal); the one
    GET METADATA is the management key's algorithm (F14). The engine proves keys by test signatures."""
    card = SoftPivCard(create_card_state(ca))
    start = len(card.trace)
    assert renew(PivSession(card), context(tmp_path, ca), Secret(PIN)).ok
    metadata = [apdu for apdu, _ in card.trace[start:] if apdu[1] == 0xF7]
    assert [a[3] for a in metadata] == [0x9B]


def test_management_key_is_authenticated_again_only_when_the_card_asks(ca: LocalCA, tmp_path: Path) -> None:
    """A card that forgets the 9B authentication answers GENERATE / PUT DATA with 69 82: the engine
    authenticates once more and sends the command again (it changed nothing); otherwise never."""
    card = SoftPivCard(create_card_state(ca))
    forget_before = {0x47: 1, 0xDB: 2}  # the first GENERATE and the second certificate's PUT DATA
    seen: dict[int, int] = {}
    inner = card.process_apdu

    def process(apdu: bytes) -> bytes:
        ins = apdu[1]
        if ins in forget_before:
            first_block = ins == 0x47 or not card.trace or card.trace[-1][0][1] != 0xDB  # not a chain's next block
            if first_block:
                seen[ins] = seen.get(ins, 0) + 1
                if seen[ins] == forget_before[ins]:
                    card.mgmt_authenticated = False
        return inner(apdu)

    card.process_apdu = process  # type: ignore[method-assign]
    assert renew(PivSession(card), context(tmp_path, ca), Secret(PIN)).ok
    logins = [i for i, (apdu, _) in enumerate(card.trace) if apdu[1] == 0x87 and apdu[3] == 0x9B]
    assert len(logins) == 3 * 2  # preflight, after the refused GENERATE, after the refused PUT DATA
    assert sum(1 for apdu, sw in card.trace if sw == 0x6982) == 2
