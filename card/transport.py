"""The transport contract between the APDU layer and a card.

A transport moves one command APDU to the card and returns the response data and the
status word SW1SW2. Two implementations exist: :mod:`card.pcsc` (a reader through PC/SC)
and :class:`card.emulator.card.SoftPivCard` (the software card, in process).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class CardTransport(Protocol):
    """A connection to one card.

    ``transmit`` raises :class:`card.errors.CardRemovedError` when the card is gone and
    :class:`card.errors.ReaderUnavailableError` when the reader or service is.
    """

    name: str
    """Human-readable name of the reader (e.g. ``"Virtual PCD 00 00"``)."""

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one command APDU (bytes); return (response data, SW1SW2 as int)."""
        ...

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Hold exclusive use of the card for one logical step (PC/SC transaction)."""
        ...

    def close(self) -> None:
        """Release the card; security state (PIN, management key) is reset."""
        ...


@contextlib.contextmanager
def no_transaction() -> Iterator[None]:
    """A transaction context that does nothing (for transports with a single user)."""
    yield
