"""A concurrent user of the card is named as such (issue 11 item 8), with pyscard's PC/SC calls
replaced: pcscd holds SCardConnect and SCardBeginTransaction back while another program holds a
card transaction, so those waits are bounded and cancellable; a reset by another program with the
card still in the reader is not a removal. (Through real pcscd with two processes:
tests/integration/test_hostile_ca_pcscd.py.)"""

from __future__ import annotations

import threading
import time

import pytest

from card import pcsc
from card.errors import CardBusyError, CardRemovedError, CardResetByOtherError, OperationCancelled

scard = pcsc._scard
READER = "Virtual PCD 00 00"


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """SCardConnect blocks (as pcscd makes it while another program holds a transaction) until the
    returned event is set; everything else succeeds."""
    assert scard is not None
    release = threading.Event()
    monkeypatch.setattr(scard, "SCardEstablishContext", lambda scope: (scard.SCARD_S_SUCCESS, 1))
    monkeypatch.setattr(scard, "SCardReleaseContext", lambda ctx: scard.SCARD_S_SUCCESS)
    monkeypatch.setattr(scard, "SCardDisconnect", lambda card, how: scard.SCARD_S_SUCCESS)

    def connect(*args: object) -> tuple[int, int, int]:
        release.wait(30)
        return scard.SCARD_S_SUCCESS, 7, scard.SCARD_PROTOCOL_T1
    monkeypatch.setattr(scard, "SCardConnect", connect)
    yield release
    release.set()


def test_a_card_held_by_another_program_is_named_busy_after_a_bounded_wait(held: threading.Event) -> None:
    start = time.monotonic()
    with pytest.raises(CardBusyError) as exc:
        pcsc.PcscTransport(READER, busy_wait_s=0.5)
    assert time.monotonic() - start < 5
    assert exc.value.title == "Another program is using the card"
    assert "another program holds a card transaction" in str(exc.value)
    assert "re-insert" not in (exc.value.next_step or "").lower()


def test_cancellation_ends_the_wait_for_the_card(held: threading.Event) -> None:
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    start = time.monotonic()
    with pytest.raises(OperationCancelled):
        pcsc.PcscTransport(READER, cancel=cancel, busy_wait_s=60)
    assert time.monotonic() - start < 5


def test_a_late_grant_is_released_not_kept(held: threading.Event, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection pcscd grants after we gave up is disconnected at once (it would hold the card)."""
    released: list[int] = []
    monkeypatch.setattr(scard, "SCardDisconnect", lambda card, how: released.append(card) or scard.SCARD_S_SUCCESS)
    with pytest.raises(CardBusyError):
        pcsc.PcscTransport(READER, busy_wait_s=0.2)
    held.set()
    for _ in range(50):
        if released:
            break
        time.sleep(0.05)
    assert released == [7]


def test_a_reset_by_another_program_with_the_card_present_is_not_a_removal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcsc, "card_present", lambda reader: True)
    error = pcsc._fail("sending a command to the card", scard.SCARD_W_RESET_CARD, READER)
    assert isinstance(error, CardResetByOtherError) and isinstance(error, CardRemovedError)
    assert error.title == "Another program reset the card" and "not removed" in error.next_step
    monkeypatch.setattr(pcsc, "card_present", lambda reader: False)
    error = pcsc._fail("sending a command to the card", scard.SCARD_W_RESET_CARD, READER)
    assert type(error) is CardRemovedError


def test_sharing_violation_is_a_busy_card() -> None:
    error = pcsc._fail("connecting", scard.SCARD_E_SHARING_VIOLATION)
    assert isinstance(error, CardBusyError) and "another program holds the card exclusively" in str(error)


@pytest.mark.parametrize("make", [lambda: pcsc._fail("connecting", scard.SCARD_E_SHARING_VIOLATION),
                                  lambda: pcsc.PcscTransport(READER, busy_wait_s=0.2)], ids=["exclusive", "transaction"])
def test_the_cli_names_a_busy_card_once(make, held: threading.Event, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """Break-it: "Another program is using the card: another program is using the card; …"."""
    import argparse
    from tui.cli.failure import fail
    try:
        error = make()
    except CardBusyError as raised:
        error = raised
    assert isinstance(error, CardBusyError)
    fail(argparse.Namespace(json=False), error)
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("cardrenew: Another program is using the card: ")
    assert first.lower().count("another program is using the card") == 1, first


def test_a_reset_held_back_by_another_programs_transaction_ends_our_wait_and_still_happens(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pcsc-lite holds a resetting SCardDisconnect back while another program holds a card transaction
    (tester F-7: the TUI, its PIN sent, waited for as long as another cardrenew renewed). Closing waits
    at most ``busy_wait_s``; the reset is still made once the other lets go."""
    assert scard is not None
    other_done = threading.Event()
    calls: list[str] = []
    ctx, handle = 41, 42  # (not the handles of other tests' threads still ending)
    monkeypatch.setattr(scard, "SCardEstablishContext", lambda scope: (scard.SCARD_S_SUCCESS, ctx))
    monkeypatch.setattr(scard, "SCardConnect", lambda *a: (scard.SCARD_S_SUCCESS, handle, scard.SCARD_PROTOCOL_T1))
    monkeypatch.setattr(scard, "SCardTransmit", lambda card, protocol, apdu: (scard.SCARD_S_SUCCESS, [0x90, 0x00]))

    def disconnect(card: int, how: int) -> int:
        if card == handle:
            if how == scard.SCARD_RESET_CARD:
                other_done.wait(30)  # as pcscd does until the other program's transaction ends
            calls.append("reset" if how == scard.SCARD_RESET_CARD else "leave")
        return scard.SCARD_S_SUCCESS

    def release(context: int) -> int:
        if context == ctx:
            calls.append("release")
        return scard.SCARD_S_SUCCESS

    monkeypatch.setattr(scard, "SCardDisconnect", disconnect)
    monkeypatch.setattr(scard, "SCardReleaseContext", release)
    transport = pcsc.PcscTransport(READER, busy_wait_s=0.3)
    transport.transmit(bytes.fromhex("002000800831323334353600ff"))  # VERIFY: the PIN was presented
    closing = threading.Thread(target=transport.close)
    closing.start()
    closing.join(10)  # (only to detect a hang)
    assert not closing.is_alive(), "close() waited for the other program's transaction"
    assert calls == []
    other_done.set()
    for _ in range(100):
        if calls:
            break
        time.sleep(0.05)
    time.sleep(0.1)
    assert calls == ["reset", "release"]  # the card is reset, late, and the context released


def test_the_card_worker_keeps_its_connection_when_the_card_is_busy() -> None:
    """A transaction not granted in time is CardBusyError, and the connection stays: dropping it
    (a reset, after a PIN) is what pcscd holds back until the other program lets go (tester F-7)."""
    import contextlib

    from card.service import CardService

    class Transport:
        busy = True
        closed = 0

        def transmit(self, apdu: bytes) -> tuple[bytes, int]:
            return b"", 0x9000

        @contextlib.contextmanager
        def transaction(self):  # type: ignore[no-untyped-def]
            if self.busy:
                raise CardBusyError("pcscd did not grant a card transaction within 5 s: another program holds "
                                    "a card transaction")
            yield

        def close(self) -> None:
            self.closed += 1

    opened: list[Transport] = []
    service = CardService(lambda: opened.append(Transport()) or opened[-1])
    try:
        with pytest.raises(CardBusyError):
            service.submit(lambda session: None).result(timeout=10)
        assert len(opened) == 1 and opened[0].closed == 0
        opened[0].busy = False
        assert service.submit(lambda session: "read").result(timeout=10) == "read"
        assert len(opened) == 1  # the same connection, once the other program let go
    finally:
        service.shutdown()
