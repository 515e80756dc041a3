"""The TUI on PC/SC through real pcscd + vpcd: reader selection with two served cards, starting
with no card inserted, and the card watcher across a pcscd restart (F22, issue 6 item 3).

Both virtual readers are used ("Virtual PCD 00 00" on 35963, "00 01" on 35964); each test checks
they are empty before serving (a card of someone else's would be read instead)."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Select

import tests.integration.conftest as integration
from card import pcsc
from card.config import load_settings
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA
from card.backend import pcsc_backend
from card.service import CardService
from tests.integration.conftest import CARDRENEW, stop_process
from tests.tui.conftest import screen_text, wait_for
from tui.app import make_app
from tui.screens import CardScreen, LogonScreen

PIN = "123456"
READERS = {35963: "Virtual PCD 00 00", 35964: "Virtual PCD 00 01"}


def wait_reader(reader: str, present: bool, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if dict(pcsc.list_readers()).get(reader, False) == present:
                return
        except Exception:  # noqa: BLE001 - pcscd may be (re)starting
            pass
        time.sleep(0.1)
    raise AssertionError(f"reader {reader} did not show card present={present}")


class Served:
    """``cardrenew emulator serve STATE --vpcd 127.0.0.1:PORT`` as a subprocess, stopped by PID."""

    def __init__(self, state: Path, port: int) -> None:
        self.reader = READERS[port]
        self.proc = subprocess.Popen(CARDRENEW + ["emulator", "serve", str(state), "--vpcd", f"127.0.0.1:{port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def cards(pcscd: None, workdir: Path) -> Iterator:  # type: ignore[type-arg]
    """``serve(port, holder) -> (Served, guid_hex)``: a card with its own holder and GUID on a reader."""
    for reader in READERS.values():
        try:
            wait_reader(reader, False, timeout_s=5)
        except AssertionError:
            pytest.skip(f"{reader} holds a card already (another test run is using the virtual readers)")
    ca = LocalCA(workdir / "ca", 90)
    served: list[Served] = []

    def serve(port: int, holder: str, wait: bool = True) -> tuple[Served, str]:
        guid = bytes([port & 0xFF]) * 16
        state = create_card_state(ca, pin=PIN, holder=holder, guid=guid)
        path = workdir / f"card-{port}.json"
        state.save(path)
        card = Served(path, port)
        served.append(card)
        if wait:
            wait_reader(card.reader, True)
        return card, guid.hex()

    yield serve
    for card in reversed(served):
        card.stop()
    for card in served:
        wait_reader(card.reader, False)


def tui_backend(workdir: Path):  # type: ignore[no-untyped-def]
    """The backend ``cardrenew`` (no --demo) builds, with the test's config and state dir."""
    settings = dataclasses.replace(load_settings(workdir / "config.toml"), state_dir=workdir / "state")
    return pcsc_backend(settings, wait_for_card=True)


def shown_guid(app) -> str:  # type: ignore[no-untyped-def]
    return str(app.screen.query_one("#card-guid").render()).replace("-", "").lower()


async def test_choose_the_second_reader_and_log_on_with_its_card(cards, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    _first, first_guid = cards(35963, "Alice Anders")
    _second, second_guid = cards(35964, "Bob Brown")
    backend = tui_backend(workdir)
    assert backend.reader_name == READERS[35963]  # several cards: the first reader holding one
    app = make_app(backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
        assert str(app.screen.query_one("#holder-name").render()) == "Alice Anders"
        select = app.screen.query_one("#reader-select", Select)
        await wait_for(pilot, lambda: "-hidden" not in select.classes)
        assert select.value == READERS[35963]  # the reader of the card in use is preselected
        options = str(select._options)
        assert f"{READERS[35963]} (card inserted)" in options and f"{READERS[35964]} (card inserted)" in options

        # Choose the second reader with the keyboard: F2 focuses the list, Enter opens it.
        await pilot.press("f2")
        await wait_for(pilot, lambda: select.has_focus)
        await pilot.press("enter")
        await wait_for(pilot, lambda: select.expanded)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: app.backend.reader_name == READERS[35964])
        await wait_for(pilot, lambda: app.summary is not None and app.summary.reader == READERS[35964])
        await wait_for(pilot, lambda: str(app.screen.query_one("#holder-name").render()) == "Bob Brown")
        assert f"Reader: {READERS[35964]}" in screen_text(app)

        app.screen.query_one("#pin-input").focus()
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        assert str(app.screen.query_one("#holder").render()) == "Bob Brown"
        assert shown_guid(app) == second_guid != first_guid
        assert app.summary is not None and app.summary.reader == READERS[35964]


async def test_no_card_at_start_then_the_card_arrives(cards, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    backend = tui_backend(workdir)  # both readers empty: `cardrenew` used to stop here with NoCardError
    assert backend.reader_name in READERS.values()
    app = make_app(backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen)
                       and "insert your smartcard" in screen_text(app))
        _card, guid = cards(35964, "Bob Brown")  # into the second reader, not the one shown
        await wait_for(pilot, lambda: str(app.screen.query_one("#holder-name").render()) == "Bob Brown")
        assert app.backend.reader_name == READERS[35964]
        app.screen.query_one("#pin-input").focus()
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        assert shown_guid(app) == guid


def test_card_watcher_survives_a_pcscd_restart(cards) -> None:  # type: ignore[no-untyped-def]
    """Card present → pcscd stopped → absence reported → pcscd started again, the emulator
    reconnects (its serve loop retries) → presence reported. Only with a pcscd this session started."""
    served, _guid = cards(35963, "Alice Anders")
    reader = served.reader
    events: list[bool] = []
    changed = threading.Event()

    def record(present: bool) -> None:
        events.append(present)
        changed.set()

    def wait_event(value: bool, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not (events and events[-1] == value):
            assert time.monotonic() < deadline, f"the watcher did not report present={value} (events {events})"
            changed.wait(0.1)
            changed.clear()

    service = CardService(lambda: pcsc.PcscTransport(reader), lambda: pcsc.card_present(reader), poll_interval_s=0.2)
    try:
        service.watch(record)
        wait_event(True, 10)
        if integration.STARTED_PCSCD is None:
            pytest.skip("restart check skipped: the pcscd running was not started by this test session, "
                        "and a pcscd we did not start is never stopped (stop it, or run where none runs)")
        integration.stop_pcscd(integration.STARTED_PCSCD)  # by PID: the one this session started
        integration.STARTED_PCSCD = None
        wait_event(False, 15)
        integration.STARTED_PCSCD = integration.start_pcscd()  # the session stops this one at its end
        wait_event(True, 30)
        assert events[-3:] == [True, False, True]
    finally:
        service.shutdown()
