"""The dry run (issue 15, ``renew --check``) through the door on the in-process card: every check a
renewal makes first is reported passed, failed (with the next step and its code) or skipped (with
why), and nothing on the card changes — the card's keys and objects are as before, it received no
GENERATE (47), PUT DATA (DB), CHANGE REFERENCE DATA (24) or RESET RETRY COUNTER (2C), and the
embedded CA recorded no grant."""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import json
import sqlite3

import pytest

from card import atomic
from card.backend import Backend
from card.config import Settings
from card.emulator.card import SoftPivCard
from card.enrollment.base import IssuerUnavailable
from card.enrollment.local import LocalCA
from card.journal import AuditLog, JournalStore
from card.piv import OBJECT_CHUID, KeyType, build_chuid
from card.secret import Secret
from card.service import CardService, CheckItem, CheckOutcome, CheckReport, CheckRequest

PIN = "123456"
DESTRUCTIVE = {0x47: "GENERATE", 0xDB: "PUT DATA", 0x24: "CHANGE REFERENCE DATA", 0x2C: "RESET RETRY COUNTER"}
OTHER_MANAGEMENT_KEY = "0F0E0D0C0B0A09080706050403020100F0E0D0C0B0A09080"


def door(card: SoftPivCard, issuer: object, settings: Settings | None = None) -> Backend:
    settings = settings or Settings()
    audit = AuditLog(settings.state_dir / "audit.log")
    return Backend(settings, CardService(lambda: card, lambda: True), issuer, JournalStore(settings.state_dir, audit),  # type: ignore[arg-type]  # a LocalCA or a test double
                   audit, "Virtual card")


def run_check(backend: Backend, pin: str | None = PIN, **request: object) -> CheckReport:
    try:
        return backend.check(CheckRequest(Secret(pin) if pin is not None else None, **request)).result(timeout=60)  # type: ignore[arg-type]
    finally:
        backend.close()


def item(report: CheckReport, check: str, slot: str | None = None) -> CheckItem:
    found = [i for i in report.items if i.check == check and i.slot == slot]
    assert len(found) == 1, [(i.check, i.slot) for i in report.items]
    return found[0]


def grants(ca_dir: object) -> int:
    with sqlite3.connect(f"{ca_dir}/ledger.sqlite") as db:
        return int(db.execute("SELECT COUNT(*) FROM grants").fetchone()[0])


class Snapshot:
    """What must not change on the card: its keys, objects and management key; and what it was sent."""

    def __init__(self, card: SoftPivCard) -> None:
        self.card = card
        self.state = json.loads(card.state.to_json())
        self.start = len(card.trace)

    def assert_unchanged(self, *, pin_retries: int | None = None) -> None:
        after = json.loads(self.card.state.to_json())
        for key in ("keys", "objects", "management_key", "pin", "puk", "puk_retries"):
            assert after[key] == self.state[key], f"{key} changed"
        assert after["pin_retries"] == (self.state["pin_retries"] if pin_retries is None else pin_retries)
        sent = {DESTRUCTIVE[apdu[1]] for apdu, _ in self.card.trace[self.start:] if apdu[1] in DESTRUCTIVE}
        assert sent == set(), f"the dry run sent {sent}"


@pytest.fixture
def ec_card(make_card):  # type: ignore[no-untyped-def]
    return make_card(key_type=KeyType.ECCP256)


def test_every_check_passes_and_nothing_changes_on_the_card_or_in_the_ca(ec_card: SoftPivCard, ca: LocalCA,
                                                                       ca_dir: object) -> None:
    before, granted = Snapshot(ec_card), grants(ca_dir)
    report = run_check(door(ec_card, ca))
    assert [i.outcome for i in report.items] == [CheckOutcome.PASSED] * len(report.items), report.items
    assert {i.check for i in report.items} >= {"card", "state_directory", "card_expiry", "certificates", "ca",
                                               "key_type", "certificate_size", "management_key", "pin", "ra_grant"}
    assert item(report, "ra_grant", "9A").message.startswith("the embedded CA would grant it now")
    assert item(report, "ra_grant", "9C").outcome is CheckOutcome.PASSED
    assert report.ok and report.summary().title == "Every check passed"
    before.assert_unchanged()
    assert grants(ca_dir) == granted  # the dry mode recorded no grant
    record = json.loads((Settings().state_dir / "audit.log").read_text().splitlines()[-1])
    assert record["event"] == "check" and record["outcome"] == "passed" and PIN not in json.dumps(record)


def test_without_a_pin_the_checks_that_need_it_are_skipped_and_named(ec_card: SoftPivCard, ca: LocalCA) -> None:
    before = Snapshot(ec_card)
    report = run_check(door(ec_card, ca), pin=None)
    pin = item(report, "pin")
    assert pin.outcome is CheckOutcome.SKIPPED
    assert "Renewal grant (9A)" in pin.message and "Renewal grant (9C)" in pin.message
    assert item(report, "ra_grant", "9A").outcome is CheckOutcome.SKIPPED
    assert item(report, "management_key").outcome is CheckOutcome.PASSED  # needs no PIN
    assert report.ok  # skipped is not failed
    before.assert_unchanged()
    assert all(not (apdu[1] == 0x20 and len(apdu) > 5) for apdu, _ in ec_card.trace), "a PIN was sent"


def expired_chuid(card: SoftPivCard) -> None:
    card.state.objects[OBJECT_CHUID.hex().upper()] = build_chuid(
        bytes(range(16)), dt.date.today() - dt.timedelta(days=3)).hex().upper()


class DownCA:
    """The embedded CA whose certificate request does not get through."""

    name = "embedded CA"

    def __init__(self, ca: LocalCA) -> None:
        self._ca = ca

    def __getattr__(self, name: str) -> object:
        return getattr(self._ca, name)

    def ca_certificates(self) -> list[object]:
        raise IssuerUnavailable("the certificate authority did not answer (connection refused)")


FAILURES = {
    # name: (set-up(card, ca, settings) -> (issuer, settings, request extras), failed check, slot, code)
    "wrong management key": (lambda card, ca, s: (card.state.__setattr__("management_key", OTHER_MANAGEMENT_KEY),
                                                  ca, s, {}), "management_key", None, "MGMTKEY"),
    "CA down": (lambda card, ca, s: (None, DownCA(ca), s, {}), "ca", None, "CA-DOWN"),
    "CA cannot be opened": (lambda card, ca, s: (None, None, s, {"issuer_error": IssuerUnavailable(
        "embedded CA at /nowhere cannot be opened")}), "ca", None, "CA-DOWN"),
    "fingerprint mismatch": (lambda card, ca, s: (None, ca, dataclasses.replace(
        s, issuer=dataclasses.replace(s.issuer, ca_fingerprint="ab" * 32)), {}), "ca", None, "CA-PIN"),
    "card expired": (lambda card, ca, s: (expired_chuid(card), ca, s, {}), "card_expiry", None, "CARD-EXPIRED"),
    "certificate too large": (lambda card, ca, s: (None, ca, dataclasses.replace(s, max_certificate_bytes=700), {}),
                              "certificate_size", "9A", "TOOLARGE"),
    "CA refuses": (lambda card, ca, s: (None, LocalCA(ca.directory, refuse_reason="not on the list"), s, {}),
                   "ra_grant", "9A", "CA-REFUSED"),
    "wrong PIN": (lambda card, ca, s: (None, ca, s, {"pin": "000000"}), "pin", None, "PIN"),
}


@pytest.mark.parametrize("name", list(FAILURES))
def test_each_failing_check_is_reported_with_its_next_step_and_nothing_changes(
        name: str, ec_card: SoftPivCard, ca: LocalCA, ca_dir: object) -> None:
    setup, check, slot, code = FAILURES[name]
    before, granted = Snapshot(ec_card), grants(ca_dir)
    _, issuer, settings, extra = setup(ec_card, ca, Settings())
    before.state = json.loads(ec_card.state.to_json())  # the fault is the starting point
    pin = extra.pop("pin", PIN)
    report = run_check(door(ec_card, issuer, settings), pin=pin, **extra)
    failed = item(report, check, slot)
    assert failed.outcome is CheckOutcome.FAILED and failed.code == code, failed
    assert failed.next_step, failed
    assert not report.ok and report.summary().title == "Some checks failed"
    assert item(report, "card").outcome is CheckOutcome.PASSED  # the run went on after the failure
    before.assert_unchanged(pin_retries=2 if name == "wrong PIN" else None)
    assert grants(ca_dir) == granted


def test_a_read_only_state_directory_fails_its_check_through_a_real_probe_write(ec_card: SoftPivCard,
                                                                              ca: LocalCA) -> None:
    state = Settings().state_dir
    state.mkdir(parents=True, exist_ok=True)
    fault = atomic.WriteFault(at=1, error=errno.EROFS, under=state)
    previous = atomic.set_write_fault(fault)
    try:
        report = run_check(door(ec_card, ca))
    finally:
        atomic.set_write_fault(previous)
    failed = item(report, "state_directory")
    assert failed.outcome is CheckOutcome.FAILED and failed.code == "STATEFILE"
    assert "read-only" in failed.message and "writable" in failed.next_step
    assert fault.operations[0][0] == "probe"  # a real write was tried, through card.atomic
    assert item(report, "pin").outcome is CheckOutcome.PASSED


def test_with_one_try_left_the_pin_is_not_sent_unless_allowed(ec_card: SoftPivCard, ca: LocalCA) -> None:
    ec_card.state.pin_retries = 1
    report = run_check(door(ec_card, ca), pin="000000")
    assert item(report, "pin").outcome is CheckOutcome.SKIPPED and "1 PIN try" in item(report, "pin").message
    assert ec_card.state.pin_retries == 1  # not sent
    report = run_check(door(ec_card, ca), refuse_last_try=False)
    assert item(report, "pin").outcome is CheckOutcome.PASSED and ec_card.state.pin_retries == 3


def test_a_blocked_pin_is_reported_and_not_sent(ec_card: SoftPivCard, ca: LocalCA) -> None:
    ec_card.state.pin_retries = 0
    before = Snapshot(ec_card)
    report = run_check(door(ec_card, ca))
    assert item(report, "pin").code == "BLOCKED" and item(report, "ra_grant", "9A").outcome is CheckOutcome.SKIPPED
    before.assert_unchanged(pin_retries=0)


def test_a_key_type_the_ca_does_not_certify_fails(ec_card: SoftPivCard, ca: LocalCA) -> None:
    class RsaOnlyCA(DownCA):
        def ca_certificates(self) -> list[object]:
            return self._ca.ca_certificates()

        def supported_key_types(self) -> set[str]:
            return {"RSA2048"}

    report = run_check(door(ec_card, RsaOnlyCA(ca)))
    failed = item(report, "key_type", "9A")
    assert failed.outcome is CheckOutcome.FAILED and "ECCP256" in failed.message and failed.code == "UNSUPPORTED"


def test_an_issuer_without_a_dry_mode_has_its_grant_skipped_never_asked(ec_card: SoftPivCard, ca: LocalCA) -> None:
    class NoDryMode:
        name = "test CA"

        def __init__(self) -> None:
            self.cancel = ca.cancel
            self.asked = 0

        def ca_certificates(self) -> list[object]:
            return ca.ca_certificates()

        def supported_key_types(self) -> set[str]:
            return ca.supported_key_types()

        def request_signer_slot(self, slot: str) -> None:
            return None

        def authorize_renewal(self, *args: object) -> None:
            self.asked += 1

    issuer = NoDryMode()
    report = run_check(door(ec_card, issuer))
    skipped = item(report, "ra_grant", "9A")
    assert skipped.outcome is CheckOutcome.SKIPPED and "no dry mode" in skipped.message
    assert issuer.asked == 0 and report.ok


def test_an_unfinished_update_fails_the_certificates_check_and_is_left_for_renew(make_card, ca: LocalCA) -> None:  # type: ignore[no-untyped-def]
    from card.emulator.card import CardFaults
    from card.service import RenewalRequest

    card = make_card(key_type=KeyType.ECCP256, faults=CardFaults(drop_at={"put-data": 2}))
    backend = door(card, ca)
    result = backend.renew(RenewalRequest(Secret(PIN))).result(timeout=60)
    backend.close()
    assert result.journal_kept
    card.faults.drop_at.clear()
    card.insert()
    before = Snapshot(card)
    report = run_check(door(card, ca))
    unfinished = item(report, "certificates")
    assert unfinished.outcome is CheckOutcome.FAILED and unfinished.code == "RESUME"
    assert result.reference in unfinished.message and "cardrenew renew" in unfinished.next_step
    for slot in ("9A", "9C"):  # finding F-27: never "did not verify … contact the RA" for a slot being finished
        grant = item(report, "ra_grant", slot)
        assert grant.outcome is CheckOutcome.SKIPPED and "finishes this slot" in grant.message, grant
    before.assert_unchanged()
    assert Settings().state_dir.joinpath(backend.journals.file_name(report.card_id or "")).exists()  # kept for renew


def test_a_blocked_pin_fails_the_check_even_without_a_pin(ec_card: SoftPivCard, ca: LocalCA) -> None:
    ec_card.state.pin_retries = 0
    report = run_check(door(ec_card, ca), pin=None)
    assert item(report, "pin").code == "BLOCKED" and not report.ok
    assert item(report, "ra_grant", "9A").message == "not checked: the PIN was not verified (see the PIN check)"
