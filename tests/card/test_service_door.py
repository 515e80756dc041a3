"""The card service's door (``card.service.CardDoor``): each named operation on the in-process card,
as the TUI and the CLI use it — futures, the card's answers as errors, secrets wiped, audit records."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from card.backend import Backend
from card.config import Settings
from card.emulator.card import SoftPivCard
from card.enrollment.local import LocalCA
from card.errors import InvalidPinError, LastPinTryError, PinBlockedError, PinFormatError
from card.journal import AuditLog, JournalStore
from card.secret import Secret
from card.service import CardService, RenewalRequest

PIN = "123456"
PUK = "12345678"
TIMEOUT_S = 60


@pytest.fixture
def door(make_card, ca: LocalCA, tmp_path: Path):  # type: ignore[no-untyped-def]
    card: SoftPivCard = make_card()
    settings = Settings(state_dir=tmp_path / "state")
    audit = AuditLog(settings.state_dir / "audit.log")
    backend = Backend(settings, CardService(lambda: card, lambda: True), ca, JournalStore(settings.state_dir, audit),
                      audit, "In-process card")
    backend.card = card  # type: ignore[attr-defined]  # for the assertions below
    yield backend
    backend.close()


def audit_events(door: Backend) -> list[tuple[str, str]]:
    return [(e["event"], e["outcome"]) for e in door.audit.read(None).entries if e["event"] in ("change_pin", "unlock_card")]


def test_read_card_returns_the_summary_with_the_pin_tries(door: Backend) -> None:
    summary = door.read_card().result(TIMEOUT_S)
    assert summary.holder == "Alex Example"
    assert summary.pin_retries == 3
    assert summary.reader == "In-process card"
    assert [s.slot.hex for s in summary.slots] == ["9A", "9C"]


def test_log_on_verifies_and_wipes_the_pin(door: Backend) -> None:
    pin = Secret(PIN)
    assert door.log_on(pin).result(TIMEOUT_S) is None
    assert pin.wiped
    assert door.tries_left("PIN").result(TIMEOUT_S) == 3  # the full counter, read after the reset


def test_after_log_on_the_card_holds_no_verified_pin(door: Backend) -> None:
    """Tester F-4: while the TUI sat logged on, any program on the host could sign with 9A without
    the PIN (the card stayed verified). The logon now resets the card once the PIN is proved."""
    door.log_on(Secret(PIN)).result(TIMEOUT_S)
    door.read_card().result(TIMEOUT_S)  # the Card tab reads the card after the logon
    assert door.card.pin_verified is False  # type: ignore[attr-defined]


def test_a_wrong_pin_raises_with_the_tries_left_and_is_wiped(door: Backend) -> None:
    pin = Secret("654321")
    with pytest.raises(InvalidPinError) as exc:
        door.log_on(pin).result(TIMEOUT_S)
    assert exc.value.attempts_remaining == 2
    assert pin.wiped
    assert door.tries_left("PIN").result(TIMEOUT_S) == 2


def test_a_short_pin_is_refused_without_a_try(door: Backend) -> None:
    with pytest.raises(PinFormatError):
        door.log_on(Secret("12")).result(TIMEOUT_S)
    assert door.tries_left("PIN").result(TIMEOUT_S) == 3


def test_change_pin_changes_it_audits_and_wipes(door: Backend) -> None:
    old, new = Secret(PIN), Secret("24681357")
    door.change_pin(old, new, card_guid="GUID").result(TIMEOUT_S)
    assert old.wiped and new.wiped
    door.log_on(Secret("24681357")).result(TIMEOUT_S)
    with pytest.raises(InvalidPinError):
        door.change_pin(Secret(PIN), Secret("11223344")).result(TIMEOUT_S)
    assert audit_events(door) == [("change_pin", "changed"), ("change_pin", "wrong_pin")]


def test_unblock_pin_with_the_puk_after_the_pin_was_blocked(door: Backend) -> None:
    for _ in range(2):
        with pytest.raises(InvalidPinError):
            door.log_on(Secret("000000")).result(TIMEOUT_S)
    with pytest.raises(PinBlockedError):
        door.log_on(Secret("000000")).result(TIMEOUT_S)
    assert door.tries_left("PIN").result(TIMEOUT_S) == 0
    with pytest.raises(InvalidPinError) as exc:
        door.unblock_pin(Secret("87654321"), Secret("13572468")).result(TIMEOUT_S)
    assert exc.value.attempts_remaining == 2
    door.unblock_pin(Secret(PUK), Secret("13572468")).result(TIMEOUT_S)
    door.log_on(Secret("13572468")).result(TIMEOUT_S)
    assert audit_events(door) == [("unlock_card", "wrong_puk"), ("unlock_card", "changed")]


class Steps:
    def __init__(self) -> None:
        self.steps: list[str] = []
        self.finished: list[str] = []

    def step(self, slot, step, detail=""):  # type: ignore[no-untyped-def]
        self.steps.append(step.name)

    def slot_finished(self, slot, result):  # type: ignore[no-untyped-def]
        self.finished.append(slot.hex)


def test_renew_reports_progress_and_asks_between_slots(door: Backend) -> None:
    progress, asked = Steps(), []
    pin = Secret(PIN)
    result = door.renew(RenewalRequest(pin, progress=progress, between_slots=lambda r: asked.append(r.slot.hex) or True)
                        ).result(TIMEOUT_S)
    assert result.ok
    assert [s.slot.hex for s in result.slots if s.renewed] == ["9A", "9C"]
    assert progress.finished == ["9A", "9C"] and asked == ["9A"]
    assert pin.wiped


def test_between_slots_false_stops_before_the_second_certificate(door: Backend) -> None:
    result = door.renew(RenewalRequest(Secret(PIN), between_slots=lambda r: False)).result(TIMEOUT_S)
    assert [s.renewed for s in result.slots] == [True, False]


def test_renew_if_due_asks_for_the_pin_only_when_something_is_due(make_card, ca: LocalCA, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    card = make_card(expires_in_days=300)
    settings = Settings(state_dir=tmp_path / "state")
    backend = Backend(settings, CardService(lambda: card), ca, JournalStore(settings.state_dir),
                      AuditLog(settings.state_dir / "audit.log"), "R")
    asked: list[bool] = []
    try:
        summary, result = backend.renew_if_due(RenewalRequest(lambda: asked.append(True) or Secret(PIN))).result(TIMEOUT_S)
    finally:
        backend.close()
    assert result is None and asked == []
    assert summary.holder == "Alex Example"


def test_renew_if_due_renews_from_the_same_reading(door: Backend) -> None:
    summary, result = door.renew_if_due(RenewalRequest(lambda: Secret(PIN))).result(TIMEOUT_S)
    assert result is not None and result.ok
    assert summary.pin_retries is None  # not asked: the engine sends the PIN next


def test_refuse_last_try_sends_no_pin(door: Backend) -> None:
    for _ in range(2):
        with pytest.raises(InvalidPinError):
            door.log_on(Secret("000000")).result(TIMEOUT_S)
    asked: list[bool] = []
    with pytest.raises(LastPinTryError):
        door.renew(RenewalRequest(lambda: asked.append(True) or Secret(PIN), refuse_last_try=True)).result(TIMEOUT_S)
    assert asked == []
    assert door.tries_left("PIN").result(TIMEOUT_S) == 1  # no try spent


def test_cancel_stops_the_renewal_before_anything_changes(door: Backend) -> None:
    door.cancel()
    assert door.cancel_event.is_set()
    before = door.card.state.objects.copy()  # type: ignore[attr-defined]
    result = door.renew(RenewalRequest(Secret(PIN))).result(TIMEOUT_S)
    assert not any(s.renewed for s in result.slots)
    assert "cancelled" in str(result.slots[0].error)
    assert door.card.state.objects == before  # type: ignore[attr-defined]


def test_watch_drops_reports_of_a_reader_switched_away_from(tmp_path: Path) -> None:
    present = {"A": threading.Event(), "B": threading.Event()}
    services = {name: CardService(lambda: None, (lambda n=name: present[n].is_set()), poll_interval_s=0.02)  # type: ignore[arg-type, return-value, misc]
                for name in present}
    settings = Settings(state_dir=tmp_path / "state")
    backend = Backend(settings, services["A"], None, JournalStore(settings.state_dir),  # type: ignore[arg-type]
                      AuditLog(settings.state_dir / "audit.log"), "A", service_factory=services.__getitem__,
                      reader_lister=lambda: [("A", False), ("B", False)])
    seen: list[bool] = []
    changed = threading.Event()
    backend.watch(lambda p: (seen.append(p), changed.set()))
    assert changed.wait(5) and seen == [False]
    backend.switch_reader("B")
    changed.clear()
    present["A"].set()  # the old reader's watcher has stopped, and its reports would be dropped
    backend.watch(lambda p: (seen.append(p), changed.set()))
    assert changed.wait(5)
    present["B"].set()
    changed.clear()
    assert changed.wait(5)
    assert seen == [False, False, True]
    backend.close()


def test_after_a_renewal_the_card_holds_no_verified_pin(door: Backend) -> None:
    """The gap of F-4 after a renewal (found by checkbusy): the engine's VERIFY stayed on the card
    while the TUI sat on the Card tab, so any program on the host could sign with the new 9A key
    without the PIN. The door now resets the card once the renewal is over."""
    assert door.renew(RenewalRequest(Secret(PIN))).result(TIMEOUT_S).ok
    door.read_card().result(TIMEOUT_S)  # the Card tab reads the card after the renewal
    assert door.card.pin_verified is False  # type: ignore[attr-defined]
