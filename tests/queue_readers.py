"""In-process readers for the renewal queue's tests: N readers, each with a SoftPivCard of its own
holder, PIN and GUID, behind the ``Backend.reader_lister`` / ``service_factory`` seams that
``card.backend.pcsc_backend`` fills with PC/SC (as tests/tui/test_reader_selection.py does).
A card can be pulled, swapped for another, or its reader unplugged; each card's APDU trace
(``SoftPivCard.trace``) shows what reached it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from card.backend import Backend
from card.config import Settings
from card.emulator.card import CardFaults, SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA, init_ca
from card.enrollment.local_settings import LocalIssuerSettings
from card.journal import AuditLog, JournalStore
from card.piv import KeyType
from card.service import CardService

READERS = ("Reader 00 00", "Reader 00 01", "Reader 01 00", "Reader 01 01")
HOLDERS = ("Alice Anders", "Bob Brown", "Carol Chen", "Dan Dunn")
PINS = ("111111", "222222", "333333", "444444")
INS_VERIFY = 0x20


class QueueReaders:
    """``n`` readers with a card each. ``foreign``: readers whose card another CA issued (our CA
    refuses it); ``faults``: per reader, the card's fault injection."""

    def __init__(self, tmp_path: Path, n: int = 4, *, foreign: tuple[str, ...] = (),
                 faults: dict[str, CardFaults] | None = None, expires_in_days: int = 30) -> None:
        self.tmp_path = tmp_path
        self.ca = self._ca(tmp_path / "ca", "Queue test CA")
        self.other_ca = self._ca(tmp_path / "other-ca", "Another CA") if foreign else None
        self.settings = dataclasses.replace(Settings(), issuer=LocalIssuerSettings(tmp_path / "ca"),
                                            management_key_source="default", state_dir=tmp_path / "state")
        self.pins = dict(zip(READERS[:n], PINS))
        self.holders = dict(zip(READERS[:n], HOLDERS))
        self.cards: dict[str, SoftPivCard] = {}
        for index, reader in enumerate(READERS[:n]):
            ca = self.other_ca if reader in foreign else self.ca
            assert ca is not None
            self.cards[reader] = self.make_card(reader, HOLDERS[index], PINS[index], bytes([index + 1]) * 16,
                                                (faults or {}).get(reader), ca, expires_in_days)
        self.connected = list(self.cards)

    @staticmethod
    def _ca(directory: Path, name: str) -> LocalCA:
        init_ca(directory, name)
        return LocalCA(directory, 90)

    def make_card(self, reader: str, holder: str, pin: str, guid: bytes, faults: CardFaults | None = None,
                  ca: LocalCA | None = None, expires_in_days: int = 30) -> SoftPivCard:
        state = create_card_state(ca or self.ca, pin=pin, holder=holder, guid=guid, key_type=KeyType.ECCP256,
                                  expires_in_days=expires_in_days)
        return SoftPivCard(state, None, faults or CardFaults(), name=reader)

    def list_readers(self) -> list[tuple[str, bool]]:
        return [(name, self.cards[name].present) for name in self.connected]

    def service(self, name: str) -> CardService:
        return CardService(lambda: self.cards[name], lambda: self.cards[name].presence(), poll_interval_s=0.05)

    def backend(self) -> Backend:
        first = self.connected[0]
        return Backend(self.settings, self.service(first), self.ca, JournalStore(self.settings.state_dir),
                       AuditLog(self.settings.state_dir / "audit.log"), first,
                       reader_lister=self.list_readers, service_factory=self.service)


def verify_pins(card: SoftPivCard) -> list[bytes]:
    """The PIN data of every VERIFY that reached ``card`` (an empty VERIFY only asks the tries left)."""
    out = []
    for apdu, _sw in card.trace:
        if len(apdu) > 5 and apdu[1] == INS_VERIFY:
            out.append(bytes(apdu[5:5 + apdu[4]]).rstrip(b"\xff"))
    return out


def wait_until(condition: Callable[[], object], timeout_s: float = 30.0, poll: Callable[[], object] | None = None) -> None:
    """Wait (polling ``poll`` if given) until ``condition()``; fail after ``timeout_s`` (a hang detector)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {getattr(condition, '__name__', condition)}")
        if poll is not None:
            poll()
        time.sleep(0.02)
