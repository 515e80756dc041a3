"""Pilot tests of reader selection on the logon pane (DESIGN §1.1, issue 6 item 2), in process:
two readers, each an in-process SoftPivCard with its own holder and GUID, behind the same
``Backend.reader_lister`` / ``service_factory`` seams that ``card.backend.pcsc_backend`` fills
with PC/SC. The same flow through real pcscd + vpcd is ``tests/integration/test_tui_readers.py``."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from textual.widgets import Select

from card.config import Settings
from card.emulator.card import CardFaults, SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA, init_ca
from card.enrollment.local_settings import LocalIssuerSettings
from card.journal import AuditLog, JournalStore
from card.backend import Backend
from card.service import CardService
from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_renewal_flow import PIN, log_on
from tui.app import make_app
from tui.screens import CardScreen, LogonScreen

READER_A, READER_B = "Reader A 00 00", "Reader B 00 01"


class TwoReaders:
    """Two readers with one card each (either may be pulled); counts who lists them, from which thread."""

    def __init__(self, tmp_path: Path, connected: list[str] | None = None) -> None:
        ca_dir = tmp_path / "ca"
        init_ca(ca_dir, "Reader test CA")
        self.ca = LocalCA(ca_dir, 90)
        self.settings = dataclasses.replace(Settings(), issuer=LocalIssuerSettings(ca_dir),
                                            management_key_source="default", state_dir=tmp_path / "state")
        self.cards = {
            READER_A: SoftPivCard(create_card_state(self.ca, pin=PIN, holder="Alice Anders", guid=bytes(16)),
                                  None, CardFaults(), name=READER_A),
            READER_B: SoftPivCard(create_card_state(self.ca, pin=PIN, holder="Bob Brown", guid=bytes(range(16))),
                                  None, CardFaults(), name=READER_B),
        }
        self.connected = list(self.cards) if connected is None else connected
        self.listing_threads: set[str] = set()
        self.services_built: list[str] = []

    def list_readers(self) -> list[tuple[str, bool]]:
        self.listing_threads.add(threading.current_thread().name)
        return [(name, self.cards[name].present) for name in self.connected]

    def service(self, name: str) -> CardService:
        self.services_built.append(name)
        card = self.cards[name]
        return CardService(lambda: card, card.presence, poll_interval_s=0.05)

    def backend(self, start: str, *, fixed: bool = False) -> Backend:
        service = self.service(start) if start else CardService(lambda: self.cards[READER_A], lambda: False)
        return Backend(self.settings, service, self.ca, JournalStore(self.settings.state_dir),
                       AuditLog(self.settings.state_dir / "audit.log"), start,
                       reader_lister=self.list_readers, service_factory=self.service, reader_fixed=fixed)


def fast_polls(app) -> None:  # type: ignore[no-untyped-def]
    app.READER_POLL_S = 0.05


def holder_shown(app) -> str:  # type: ignore[no-untyped-def]
    return str(app.screen.query_one("#holder-name").render())


async def test_reader_list_preselects_the_card_and_switching_reads_the_other_card(tmp_path: Path) -> None:
    readers = TwoReaders(tmp_path)
    readers.cards[READER_A].remove()  # the only card is in the second reader, which pcsc_backend chose
    app = make_app(readers.backend(READER_B))
    fast_polls(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
        select = app.screen.query_one("#reader-select", Select)
        await wait_for(pilot, lambda: select.display and "-hidden" not in select.classes)
        assert select.value == READER_B  # the reader holding the card is preselected
        assert holder_shown(app) == "Bob Brown"
        assert "Reader B 00 01 (card inserted)" in str(select._options) and "Reader A 00 00 (no card)" in str(select._options)
        assert readers.listing_threads and threading.main_thread().name not in readers.listing_threads  # listed, never on the UI thread

        # The user chooses the empty reader: a new service on it, the holder is asked for the card.
        select.value = READER_A
        await wait_for(pilot, lambda: app.backend.reader_name == READER_A)
        await wait_for(pilot, lambda: "insert your smartcard" in screen_text(app))
        assert "Reader: Reader A 00 00" in screen_text(app)
        assert holder_shown(app) == "–"
        # Chosen by the user: the app does not move back to the reader holding a card on its own.
        await pilot.pause(0.3)
        assert app.backend.reader_name == READER_A

        # A card arrives in the chosen reader: the watcher of the new service reports it.
        readers.cards[READER_A].insert()
        await wait_for(pilot, lambda: holder_shown(app) == "Alice Anders")

        # Back to the second reader with the F2 key and the list; log on there.
        await pilot.press("f2")
        await wait_for(pilot, lambda: select.has_focus)
        select.value = READER_B
        await wait_for(pilot, lambda: holder_shown(app) == "Bob Brown")
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        assert app.summary is not None and app.summary.guid_text is not None
        assert app.summary.guid_text.replace("-", "").lower() == bytes(range(16)).hex()
        assert str(app.screen.query_one("#card-guid").render()) == app.summary.guid_text
        assert str(app.screen.query_one("#holder").render()) == "Bob Brown"
        assert readers.services_built == [READER_B, READER_A, READER_B]


async def test_no_card_at_start_then_a_card_arrives(tmp_path: Path) -> None:
    """No reader and no card when the TUI starts: the logon pane asks for the card, then follows it."""
    readers = TwoReaders(tmp_path, connected=[])
    for card in readers.cards.values():
        card.remove()
    app = make_app(readers.backend(""))
    fast_polls(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen)
                       and "insert your smartcard" in screen_text(app))
        assert "Reader: none connected" in screen_text(app)
        readers.connected = [READER_A]  # a reader is plugged in, still empty
        await pilot.pause(0.3)
        assert "insert your smartcard" in screen_text(app)
        assert "-hidden" in app.screen.query_one("#reader-select").classes  # one reader: no list
        readers.cards[READER_A].insert()
        await wait_for(pilot, lambda: holder_shown(app) == "Alice Anders")
        assert app.backend.reader_name == READER_A
        assert "Reader: Reader A 00 00" in screen_text(app)


async def test_a_named_reader_is_kept(tmp_path: Path) -> None:
    """--reader NAME: the card in another reader never moves the app off the named one."""
    readers = TwoReaders(tmp_path)
    readers.cards[READER_A].remove()
    app = make_app(readers.backend(READER_A, fixed=True))
    fast_polls(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "insert your smartcard" in screen_text(app))
        await pilot.pause(0.3)
        assert app.backend.reader_name == READER_A and holder_shown(app) == "–"


async def test_the_demo_offers_no_reader_list(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _card = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
        assert not app.screen.query("#reader-select")
        assert app.readers is None
