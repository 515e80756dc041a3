"""PC/SC readers through pyscard — the only module that imports pyscard (``smartcard``).

Uses pyscard's low-level ``smartcard.scard`` binding so that transactions, the disposition
on disconnect (reset: the PIN state never outlives us) and status changes are explicit.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from card.errors import (
    CardBusyError,
    CardError,
    CardRemovedError,
    CardResetByOtherError,
    NoCardError,
    OperationCancelled,
    ReaderUnavailableError,
)

try:
    from smartcard import scard as _scard
except ImportError:  # pragma: no cover - reported when used
    _scard = None  # type: ignore[assignment]  # no pyscard: ReaderUnavailableError when used

_REMOVED = {"SCARD_W_REMOVED_CARD", "SCARD_W_RESET_CARD", "SCARD_E_NO_SMARTCARD", "SCARD_W_UNPOWERED_CARD",
            "SCARD_E_NOT_TRANSACTED"}  # NOT_TRANSACTED: seen right after an insertion while pcscd powers the card
_NO_SERVICE = {"SCARD_E_NO_SERVICE", "SCARD_E_SERVICE_STOPPED"}


def _name(code: int) -> str:
    for attr in dir(_scard):
        if attr.startswith("SCARD_") and getattr(_scard, attr) == code & 0xFFFFFFFF and ("_E_" in attr or "_W_" in attr):
            return attr
    return f"0x{code & 0xFFFFFFFF:08X}"


BUSY_WAIT_S = 5.0
"""How long to wait for another program's hold on the card (its PC/SC transaction, during which
pcscd makes SCardConnect and SCardBeginTransaction wait) before saying the card is busy (seconds).
Other programs hold it for milliseconds; another ``cardrenew renew`` holds it for its whole run."""


def _fail(what: str, code: int, reader: str | None = None) -> CardError:
    name = _name(code)
    if name == "SCARD_W_RESET_CARD" and reader is not None and card_present(reader):
        return CardResetByOtherError(f"{what}: another program reset the card; it is still in the reader ({name})")
    if name in _REMOVED:
        return CardRemovedError(f"{what}: the card was removed or reset ({name})")
    if name in _NO_SERVICE:
        return ReaderUnavailableError(f"{what}: the smart card service (pcscd) is not running ({name})")
    if name == "SCARD_E_SHARING_VIOLATION":
        return CardBusyError(f"{what}: another program holds the card exclusively ({name})")
    if name in ("SCARD_E_READER_UNAVAILABLE", "SCARD_E_UNKNOWN_READER"):
        return ReaderUnavailableError(f"{what}: the reader is not available ({name})")
    if name == "SCARD_E_NO_READERS_AVAILABLE":
        return ReaderUnavailableError(f"{what}: no card reader is connected ({name})")
    if name == "SCARD_E_INSUFFICIENT_BUFFER":  # F17: a programming error, never the card's fault
        return CardError(f"{what}: the receive buffer was rejected by pcsc-lite ({name}); this is a bug in "
                         "cardrenew, not a card problem", next_step="Report this to the cardrenew maintainers.")
    if name in ("SCARD_E_NO_ACCESS", "SCARD_W_SECURITY_VIOLATION"):  # F20: polkit refusing the session
        return ReaderUnavailableError(
            f"{what}: pcscd refused this session ({name})",
            next_step="pcscd refused this session; a polkit rule granting access_pcsc and access_card to your user is needed.")
    return CardError(f"{what} failed ({name})")


def _context(retry_s: float = 3.0) -> int:
    if _scard is None:
        raise ReaderUnavailableError("pyscard is not installed")
    deadline = time.monotonic() + retry_s
    while True:
        rc, ctx = _scard.SCardEstablishContext(_scard.SCARD_SCOPE_USER)
        if rc == _scard.SCARD_S_SUCCESS:
            return int(ctx)
        if _name(rc) not in _NO_SERVICE or time.monotonic() > deadline:  # F21: service starting
            raise _fail("connecting to pcscd", rc)
        time.sleep(0.2)


def list_readers() -> list[tuple[str, bool]]:
    """Readers known to pcscd, each with whether it holds a card.

    Raises:
        ReaderUnavailableError: pcscd is not running or refuses us.
    """
    ctx = _context()
    try:
        rc, readers = _scard.SCardListReaders(ctx, [])
        if rc != _scard.SCARD_S_SUCCESS:
            if _name(rc) == "SCARD_E_NO_READERS_AVAILABLE":
                return []
            raise _fail("listing readers", rc)
        states = [(r, _scard.SCARD_STATE_UNAWARE) for r in readers]
        rc, new_states = _scard.SCardGetStatusChange(ctx, 0, states)
        if rc not in (_scard.SCARD_S_SUCCESS, _scard.SCARD_E_TIMEOUT):
            raise _fail("reading reader status", rc)
        return [(r, bool(state & _scard.SCARD_STATE_PRESENT)) for r, state, _atr in new_states]
    finally:
        _scard.SCardReleaseContext(ctx)


def choose_reader(name: str | None) -> str:
    """The reader to use: ``name`` (exact or unique substring), else the only reader holding a card.

    Raises:
        ReaderUnavailableError: no such reader / no reader; NoCardError: no card, or several cards.
    """
    readers = list_readers()
    if not readers:
        raise ReaderUnavailableError("no card reader is connected")
    if name:
        exact = [r for r, _ in readers if r == name]
        matches = exact or [r for r, _ in readers if name in r]
        if len(matches) != 1:
            known = ", ".join(r for r, _ in readers)
            raise ReaderUnavailableError(f"reader {name!r} not found (readers: {known})")
        return matches[0]
    with_card = [r for r, present in readers if present]
    if not with_card:
        raise NoCardError("no card is inserted in any reader")
    if len(with_card) > 1:
        raise NoCardError(f"cards are inserted in several readers ({', '.join(with_card)}); choose one with --reader",
                          next_step="Run again with --reader NAME, or remove the other cards.")
    return with_card[0]


def _bounded(call: Callable[[], Any], undo: Callable[[Any], None], *, wait_s: float,
             cancel: threading.Event | None, what: str) -> Any:
    """Run a PC/SC call that pcscd may hold back while another program holds the card (SCardConnect,
    SCardBeginTransaction) on a daemon thread, and wait for it at most ``wait_s`` seconds, looking
    at ``cancel`` every 0.1 s. A call given up on is left to finish on its thread; ``undo(result)``
    then releases what it got, so that a late grant never holds the card.

    Raises:
        CardBusyError: not granted within ``wait_s``; OperationCancelled: ``cancel`` was set.
    """
    lock = threading.Lock()
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            result: Any = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            result = exc
        with lock:
            if box.get("abandoned"):
                if not isinstance(result, BaseException):
                    with contextlib.suppress(Exception):
                        undo(result)
                return
            box["result"] = result
        done.set()

    threading.Thread(target=run, name=f"pcsc-{what}", daemon=True).start()
    end = time.monotonic() + wait_s
    cancel = cancel or threading.Event()
    while not done.wait(0.1):
        if cancel.is_set() or time.monotonic() >= end:
            with lock:
                if "result" not in box:
                    box["abandoned"] = True
                    if cancel.is_set():
                        raise OperationCancelled(f"stopped while waiting for the card ({what})")
                    raise CardBusyError(f"pcscd did not grant {what} within {wait_s:g} s: another program "
                                        "holds a card transaction")
            break
    result = box["result"]
    if isinstance(result, BaseException):
        raise result
    return result


class PcscTransport:
    """A shared T=1 connection to the card in one reader (F19: never exclusive).

    Args:
        reader: the PC/SC reader name.
        cancel: when set, a wait for another program's hold on the card ends (OperationCancelled).
        busy_wait_s: how long to wait for another program's hold before CardBusyError.

    Raises:
        CardBusyError: another program holds the card longer than ``busy_wait_s``.
        NoCardError, ReaderUnavailableError, OperationCancelled.
    """

    def __init__(self, reader: str, cancel: threading.Event | None = None, busy_wait_s: float = BUSY_WAIT_S) -> None:
        self.name = reader
        self._cancel = cancel
        self._busy_wait_s = busy_wait_s

        def connect() -> tuple[int, int, int, int]:
            ctx = _context()  # its own context: pcsc-lite locks a context while a call on it waits
            rc, card, protocol = _scard.SCardConnect(
                ctx, reader, _scard.SCARD_SHARE_SHARED, _scard.SCARD_PROTOCOL_T1 | _scard.SCARD_PROTOCOL_T0)
            if rc != _scard.SCARD_S_SUCCESS:
                _scard.SCardReleaseContext(ctx)
            return rc, ctx, card, protocol

        def release(result: tuple[int, int, int, int]) -> None:
            rc, ctx, card, _ = result
            if rc == _scard.SCARD_S_SUCCESS:
                _scard.SCardDisconnect(card, _scard.SCARD_LEAVE_CARD)
                _scard.SCardReleaseContext(ctx)

        rc, self._ctx, self._card, self._protocol = _bounded(connect, release, wait_s=busy_wait_s, cancel=cancel,
                                                             what=f"a connection to {reader}")
        if rc != _scard.SCARD_S_SUCCESS:
            if _name(rc) in ("SCARD_E_NO_SMARTCARD", "SCARD_W_REMOVED_CARD"):
                raise NoCardError(f"no card in {reader}")
            raise _fail(f"connecting to {reader}", rc, reader)
        self._in_transaction = False
        self._secured = False  # a PIN or the management key was presented on this connection

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        if len(apdu) > 5 and (apdu[1] == 0x20 or (apdu[1] == 0x87 and apdu[3] == 0x9B)):
            self._secured = True
        rc, response = _scard.SCardTransmit(self._card, self._protocol, list(apdu))
        if rc != _scard.SCARD_S_SUCCESS:
            raise _fail("sending a command to the card", rc, self.name)
        if len(response) < 2:  # vpcd: a pulled card first shows as an empty response
            raise CardRemovedError("the card gave no status word (removed)")
        return bytes(response[:-2]), (response[-2] << 8) | response[-1]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """SCardBeginTransaction … SCardEndTransaction, ended in a ``finally`` (F19)."""
        if self._in_transaction:
            yield
            return
        card = self._card
        rc = _bounded(lambda: _scard.SCardBeginTransaction(card),
                      lambda rc: _scard.SCardEndTransaction(card, _scard.SCARD_LEAVE_CARD) if rc == 0 else None,
                      wait_s=self._busy_wait_s, cancel=self._cancel, what="a card transaction")
        if rc != _scard.SCARD_S_SUCCESS:
            raise _fail("starting a card transaction", rc, self.name)
        self._in_transaction = True
        try:
            yield
        finally:
            self._in_transaction = False
            _scard.SCardEndTransaction(self._card, _scard.SCARD_LEAVE_CARD)

    def close(self) -> None:
        """Disconnect. After a PIN or management key was presented, reset the card
        (SCARD_RESET_CARD) so that state never outlives us; a read-only session leaves the
        card as it is, so that other programs using it are not disturbed (F19).

        pcsc-lite holds a resetting SCardDisconnect back while another program holds a card
        transaction (for as long as it does: another ``cardrenew renew``), so that one runs on a
        daemon thread, waited for at most ``busy_wait_s`` (tester F-7); given up on, it resets the
        card as soon as the other program lets go."""
        card, ctx = self._card, self._ctx
        disposition = _scard.SCARD_RESET_CARD if self._secured else _scard.SCARD_LEAVE_CARD

        def disconnect() -> None:
            try:
                _scard.SCardDisconnect(card, disposition)
            finally:
                _scard.SCardReleaseContext(ctx)

        if disposition == _scard.SCARD_LEAVE_CARD:
            disconnect()  # pcsc-lite never waits for another program's transaction here
            return

        def reset() -> None:
            with contextlib.suppress(Exception):  # nothing is to be printed over the TUI from this thread
                disconnect()

        resetting = threading.Thread(target=reset, name="pcsc-reset", daemon=True)
        resetting.start()
        resetting.join(self._busy_wait_s)


def card_present(reader: str) -> bool:
    """True when ``reader`` holds a card (False also when pcscd or the reader is gone)."""
    try:
        return dict(list_readers()).get(reader, False)
    except CardError:
        return False
