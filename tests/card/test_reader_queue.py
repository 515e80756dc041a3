"""The renewal queue (issue 15) on four in-process readers: four cards renewed at once, each with
its own PIN; a pulled card and a CA refusal leave the others renewed; the PIN typed for one card
never reaches another; wrong PIN, last try, a reader unplugged. The same through the TUI is
tests/tui/test_readers_pane.py, through pcscd tests/integration/test_queue_pcscd.py."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from card.emulator.card import CardFaults
from card.errors import CardChangedError
from card.secret import Secret
from card.service import EntryState, QueueEntry, ReaderQueue, RenewalRequest
from tests.queue_readers import PINS, READERS, QueueReaders, verify_pins, wait_until


def started(readers: QueueReaders) -> tuple[ReaderQueue, list[QueueEntry]]:
    seen: list[QueueEntry] = []
    lock = threading.Lock()

    def changed(entry: QueueEntry) -> None:
        with lock:
            seen.append(entry)

    queue = ReaderQueue(readers.backend(), changed)
    wait_until(lambda: all(e.state is not EntryState.READING for e in queue.entries())
               and len(queue.entries()) == len(readers.connected), poll=queue.poll)
    return queue, seen


def renew_all(queue: ReaderQueue, readers: QueueReaders) -> dict[str, QueueEntry]:
    futures = {}
    for reader in readers.connected:
        entry = queue.ask_pin(reader)
        assert entry is not None and entry.holder == readers.holders[reader]
        futures[reader] = queue.renew(reader, entry.card_id, Secret(readers.pins[reader]))
    return {reader: f.result(timeout=60) for reader, f in futures.items()}


def test_four_cards_renewed_at_once_each_with_its_own_pin(tmp_path: Path) -> None:
    readers = QueueReaders(tmp_path, 4, faults={r: CardFaults(delays_s={0x47: 0.3}) for r in READERS})
    queue, seen = started(readers)
    try:
        assert [e.state for e in queue.entries()] == [EntryState.DUE] * 4
        assert {e.holder for e in queue.entries()} == set(readers.holders.values())
        done = renew_all(queue, readers)
        assert {r: e.state for r, e in done.items()} == {r: EntryState.DONE for r in READERS}
        assert queue.summary() == {"renewed": 4, "failed": 0, "not_due": 0}
        # at once: at some moment more than one card was renewing (one worker per reader)
        renewing: set[str] = set()
        most = 0
        for entry in seen:
            (renewing.add if entry.state is EntryState.RENEWING else renewing.discard)(entry.reader)
            most = max(most, len(renewing))
        assert most >= 2
        for reader, card in readers.cards.items():  # each card saw its own PIN, and only its own
            assert set(verify_pins(card)) == {readers.pins[reader].encode()}
    finally:
        queue.close()


def test_a_pulled_card_and_a_ca_refusal_leave_the_others_renewed(tmp_path: Path) -> None:
    pulled, refused = READERS[1], READERS[2]
    readers = QueueReaders(tmp_path, 4, foreign=(refused,), faults={pulled: CardFaults(drop_at_put_data=2)})
    queue, _ = started(readers)
    try:
        done = renew_all(queue, readers)
        assert done[READERS[0]].state is done[READERS[3]].state is EntryState.DONE
        assert done[pulled].state is EntryState.FAILED and done[pulled].reference
        assert "removed" in done[pulled].message and "resumes" in done[pulled].next_step
        assert done[refused].state is EntryState.FAILED and done[refused].reference
        assert "not issued by this CA" in done[refused].message
        assert f"ref {done[refused].reference}" in done[refused].status
        assert queue.summary() == {"renewed": 2, "failed": 2, "not_due": 0}
    finally:
        queue.close()


def test_the_pin_typed_for_card_a_never_reaches_card_b(tmp_path: Path) -> None:
    """The holder of A types the PIN; before it is sent, A is pulled and B put in the same reader,
    between two polls. Nothing of A's PIN reaches B: the first attempt finds A gone; once the queue
    has read B, the PIN asked for A is refused for B's entry, unsent."""
    readers = QueueReaders(tmp_path, 2)
    queue, _ = started(readers)
    reader = READERS[0]
    try:
        entry = queue.ask_pin(reader)
        assert entry is not None
        card_b = readers.make_card(reader, "Mallory Moss", "999999", b"\x99" * 16)
        readers.cards[reader].remove()
        readers.cards[reader] = card_b
        result = queue.renew(reader, entry.card_id, Secret(PINS[0])).result(timeout=30)
        assert result.state is EntryState.FAILED and result.holder == "Alice Anders"
        wait_until(lambda: (e := queue.entry(reader)) is not None and e.holder == "Mallory Moss"
                   and e.state is EntryState.DUE, poll=queue.poll)
        with pytest.raises(CardChangedError):
            queue.renew(reader, entry.card_id, Secret(PINS[0]))
        assert verify_pins(card_b) == [] and PINS[0].encode() not in b"".join(a for a, _ in card_b.trace)
        assert queue.summary()["failed"] >= 1
    finally:
        queue.close()


def test_the_door_checks_the_card_again_in_the_renewal_transaction(tmp_path: Path) -> None:
    """The race the queue cannot see: the reader's worker already talks to card B while the entry
    still names A. ``expect_card`` makes the door read the card in the renewal's own transaction and
    refuse before any VERIFY: B's APDU trace holds no VERIFY at all."""
    readers = QueueReaders(tmp_path, 1)
    queue, _ = started(readers)
    reader = READERS[0]
    try:
        a_id = queue.entry(reader).card_id  # type: ignore[union-attr]
        door = readers.backend().reader_door(reader)
        card_b = readers.make_card(reader, "Mallory Moss", "999999", b"\x99" * 16)
        readers.cards[reader] = card_b
        pin = Secret(PINS[0])
        with pytest.raises(CardChangedError):
            door.renew_if_due(RenewalRequest(pin, expect_card=a_id)).result(timeout=30)
        assert pin.wiped
        assert card_b.trace and not any(apdu[1] == 0x20 for apdu, _ in card_b.trace)
        door.close()
    finally:
        queue.close()


def test_wrong_pin_asks_again_and_the_last_try_is_never_spent_unasked(tmp_path: Path) -> None:
    readers = QueueReaders(tmp_path, 1)
    queue, _ = started(readers)
    reader = READERS[0]
    try:
        for left in (2, 1):
            entry = queue.ask_pin(reader)
            assert entry is not None
            after = queue.renew(reader, entry.card_id, Secret("000000")).result(timeout=30)
            assert after.state is EntryState.DUE and after.pin_retries == left and "Wrong PIN" in after.message
        entry = queue.ask_pin(reader)
        assert entry is not None and entry.pin_retries == 1
        sent = len(verify_pins(readers.cards[reader]))
        after = queue.renew(reader, entry.card_id, Secret(PINS[0])).result(timeout=30)  # not confirmed
        assert after.state is EntryState.DUE and "PIN not sent" in after.message
        assert len(verify_pins(readers.cards[reader])) == sent
        entry = queue.ask_pin(reader)
        assert entry is not None
        after = queue.renew(reader, entry.card_id, Secret(PINS[0]), allow_last_try=True).result(timeout=30)
        assert after.state is EntryState.DONE
    finally:
        queue.close()


def test_a_reader_unplugged_shows_so_and_the_others_go_on(tmp_path: Path) -> None:
    readers = QueueReaders(tmp_path, 2)
    queue, _ = started(readers)
    try:
        readers.connected.remove(READERS[1])
        queue.poll()
        assert queue.entry(READERS[1]) is not None and queue.entry(READERS[1]).state is EntryState.GONE  # type: ignore[union-attr]
        entry = queue.ask_pin(READERS[0])
        assert entry is not None
        assert queue.renew(READERS[0], entry.card_id, Secret(PINS[0])).result(timeout=30).state is EntryState.DONE
        readers.connected.append(READERS[1])  # plugged in again: its card is read again
        wait_until(lambda: (e := queue.entry(READERS[1])) is not None and e.state is EntryState.DUE, poll=queue.poll)
    finally:
        queue.close()


def test_a_card_not_due_is_counted_as_up_to_date(tmp_path: Path) -> None:
    readers = QueueReaders(tmp_path, 1, expires_in_days=300)
    queue, _ = started(readers)
    try:
        entry = queue.entry(READERS[0])
        assert entry is not None and entry.state is EntryState.NOT_DUE and "up to date" in entry.message
        assert queue.ask_pin(READERS[0]) is None
        assert queue.summary() == {"renewed": 0, "failed": 0, "not_due": 1}
    finally:
        queue.close()
