"""PC/SC readers through pyscard — the only module that imports pyscard (``smartcard``).

Uses pyscard's low-level ``smartcard.scard`` binding so that transactions, the disposition
on disconnect (reset: the PIN state never outlives us) and status changes are explicit.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from card.errors import CardError, CardRemovedError, NoCardError, ReaderUnavailableError

try:
    from smartcard import scard as _scard
except ImportError:  # pragma: no cover - reported when used
    _scard = None  # type: ignore[assignment]

_REMOVED = {"SCARD_W_REMOVED_CARD", "SCARD_W_RESET_CARD", "SCARD_E_NO_SMARTCARD", "SCARD_W_UNPOWERED_CARD",
            "SCARD_E_NOT_TRANSACTED"}  # NOT_TRANSACTED: seen right after an insertion while pcscd powers the card
_NO_SERVICE = {"SCARD_E_NO_SERVICE", "SCARD_E_SERVICE_STOPPED"}


def _name(code: int) -> str:
    for attr in dir(_scard):
        if attr.startswith("SCARD_") and getattr(_scard, attr) == code & 0xFFFFFFFF and ("_E_" in attr or "_W_" in attr):
            return attr
    return f"0x{code & 0xFFFFFFFF:08X}"


def _fail(what: str, code: int) -> CardError:
    name = _name(code)
    if name in _REMOVED:
        return CardRemovedError(f"{what}: the card was removed or reset ({name})")
    if name in _NO_SERVICE:
        return ReaderUnavailableError(f"{what}: the smart card service (pcscd) is not running ({name})")
    if name == "SCARD_E_SHARING_VIOLATION":
        return ReaderUnavailableError(f"{what}: another program holds the card exclusively ({name})",
                                      next_step="Close programs that use the card (gpg's scdaemon, gsd-smartcard) and try again.")
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


class PcscTransport:
    """A shared T=1 connection to the card in one reader (F19: never exclusive)."""

    def __init__(self, reader: str) -> None:
        self.name = reader
        self._ctx = _context()
        rc, self._card, self._protocol = _scard.SCardConnect(
            self._ctx, reader, _scard.SCARD_SHARE_SHARED, _scard.SCARD_PROTOCOL_T1 | _scard.SCARD_PROTOCOL_T0)
        if rc != _scard.SCARD_S_SUCCESS:
            _scard.SCardReleaseContext(self._ctx)
            if _name(rc) in ("SCARD_E_NO_SMARTCARD", "SCARD_W_REMOVED_CARD"):
                raise NoCardError(f"no card in {reader}")
            raise _fail(f"connecting to {reader}", rc)
        self._in_transaction = False
        self._secured = False  # a PIN or the management key was presented on this connection

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        if len(apdu) > 5 and (apdu[1] == 0x20 or (apdu[1] == 0x87 and apdu[3] == 0x9B)):
            self._secured = True
        rc, response = _scard.SCardTransmit(self._card, self._protocol, list(apdu))
        if rc != _scard.SCARD_S_SUCCESS:
            raise _fail("sending a command to the card", rc)
        if len(response) < 2:  # vpcd: a pulled card first shows as an empty response
            raise CardRemovedError("the card gave no status word (removed)")
        return bytes(response[:-2]), (response[-2] << 8) | response[-1]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """SCardBeginTransaction … SCardEndTransaction, ended in a ``finally`` (F19)."""
        if self._in_transaction:
            yield
            return
        rc = _scard.SCardBeginTransaction(self._card)
        if rc != _scard.SCARD_S_SUCCESS:
            raise _fail("starting a card transaction", rc)
        self._in_transaction = True
        try:
            yield
        finally:
            self._in_transaction = False
            _scard.SCardEndTransaction(self._card, _scard.SCARD_LEAVE_CARD)

    def close(self) -> None:
        """Disconnect. After a PIN or management key was presented, reset the card
        (SCARD_RESET_CARD) so that state never outlives us; a read-only session leaves the
        card as it is, so that other programs using it are not disturbed (F19)."""
        disposition = _scard.SCARD_RESET_CARD if self._secured else _scard.SCARD_LEAVE_CARD
        try:
            _scard.SCardDisconnect(self._card, disposition)
        finally:
            _scard.SCardReleaseContext(self._ctx)


def card_present(reader: str) -> bool:
    """True when ``reader`` holds a card (False also when pcscd or the reader is gone)."""
    try:
        return dict(list_readers()).get(reader, False)
    except CardError:
        return False
