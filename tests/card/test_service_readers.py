"""The card service's reader seams: switching readers, starting without a card, and a presence
watcher that keeps going while pcscd is away (F22) — in process, with ``card.pcsc`` stubbed.
The same through a real pcscd restart is ``tests/integration/test_tui_readers.py``."""

from __future__ import annotations

import threading
import time

import pytest

from card import pcsc
from card.config import Settings
from card.errors import NoCardError, ReaderUnavailableError
from card.backend import Backend, pcsc_backend
from card.service import CardService


def _wait(condition, timeout_s: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_watcher_reports_absence_while_pcscd_is_away_and_presence_when_it_is_back() -> None:
    """``pcsc.card_present`` opens a new context for every poll; while pcscd is gone the poll
    fails (or says False) and the watcher goes on, reporting the card again when pcscd is back."""
    world = {"pcscd": True}

    def presence() -> bool:
        if not world["pcscd"]:
            raise ReaderUnavailableError("the smart card service (pcscd) is not running")
        return True

    events: list[bool] = []
    service = CardService(lambda: None, presence, poll_interval_s=0.02)  # type: ignore[arg-type,return-value]
    try:
        service.watch(events.append)
        assert _wait(lambda: events == [True])
        world["pcscd"] = False
        assert _wait(lambda: events == [True, False])
        world["pcscd"] = True
        assert _wait(lambda: events == [True, False, True])
    finally:
        service.shutdown()


def test_switch_reader_builds_a_new_service_and_shuts_the_old_one_without_waiting() -> None:
    release = threading.Event()
    closed: list[str] = []

    class Transport:
        def __init__(self, name: str) -> None:
            self.name = name

        def transaction(self):  # type: ignore[no-untyped-def]
            import contextlib

            return contextlib.nullcontext()

        def close(self) -> None:
            closed.append(self.name)

        def transmit(self, apdu: bytes) -> tuple[bytes, int]:
            return b"", 0x9000

    def factory(name: str) -> CardService:
        return CardService(lambda: Transport(name), lambda: True)  # type: ignore[arg-type,return-value]

    backend = Backend(Settings(), factory("A"), None, None, None, "A",  # type: ignore[arg-type]
                      reader_lister=lambda: [("A", True), ("B", True)], service_factory=factory)
    old = backend.service
    busy = old.submit(lambda session: release.wait(5))  # a card step still running on reader A
    assert _wait(lambda: busy.running())
    started = time.monotonic()
    new = backend.switch_reader("B")
    assert time.monotonic() - started < 0.5  # the UI thread is never held by the old reader's work
    assert backend.service is new and new is not old and backend.reader_name == "B"
    assert backend.list_readers() == [("A", True), ("B", True)] and backend.can_switch_reader
    release.set()
    assert busy.result(timeout=5) is True  # the running step finished on its own thread
    assert _wait(lambda: closed == ["A"])  # then reader A was disconnected
    assert new.submit(lambda session: session.transport.name).result(timeout=5) == "B"  # type: ignore[attr-defined]
    new.shutdown()
    assert closed == ["A", "B"]


def test_a_fixed_card_cannot_switch_readers() -> None:
    backend = Backend(Settings(), CardService(lambda: None), None, None, None, "demo")  # type: ignore[arg-type,return-value]
    assert not backend.can_switch_reader and backend.list_readers() == [("demo", True)]
    with pytest.raises(ValueError):
        backend.switch_reader("other")
    backend.service.shutdown()


@pytest.mark.parametrize(("readers", "expected"), [
    ([], ""),                                                   # no reader yet
    ([("R0", False), ("R1", False)], "R0"),                     # readers, no card
    ([("R0", False), ("R1", True), ("R2", True)], "R1"),        # several cards: the first holding one
])
def test_the_tui_backend_starts_without_a_card(monkeypatch: pytest.MonkeyPatch, tmp_path, readers, expected) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pcsc, "list_readers", lambda: readers)
    settings = Settings(state_dir=tmp_path)
    with pytest.raises((NoCardError, ReaderUnavailableError)):  # status / renew still refuse
        pcsc_backend(settings, with_issuer=False)
    backend = pcsc_backend(settings, with_issuer=False, wait_for_card=True)
    try:
        assert backend.reader_name == expected and not backend.reader_fixed and backend.can_switch_reader
        if not expected:
            with pytest.raises(NoCardError):
                backend.service.submit(lambda session: None).result(timeout=5)
    finally:
        backend.service.shutdown()


def test_the_tui_backend_without_pcscd_still_starts(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def down() -> list[tuple[str, bool]]:
        raise ReaderUnavailableError("the smart card service (pcscd) is not running")

    monkeypatch.setattr(pcsc, "list_readers", down)
    backend = pcsc_backend(Settings(state_dir=tmp_path), with_issuer=False, wait_for_card=True)
    assert backend.reader_name == ""
    backend.service.shutdown()


def test_a_named_reader_that_is_missing_is_still_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pcsc, "list_readers", lambda: [("R0", True)])
    with pytest.raises(ReaderUnavailableError):
        pcsc_backend(Settings(state_dir=tmp_path), "Nope", with_issuer=False, wait_for_card=True)
    backend = pcsc_backend(Settings(state_dir=tmp_path), "R0", with_issuer=False, wait_for_card=True)
    assert backend.reader_name == "R0" and backend.reader_fixed
    backend.service.shutdown()
