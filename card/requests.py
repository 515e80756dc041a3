"""What a renewal asks of the door (:meth:`card.service.CardDoor.renew`), beside the card: kept apart
from the door so that the door's module holds its operations; re-exported by :mod:`card.service`."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from card.renewal import RenewalReporter, SlotResult
    from card.secret import Secret


@dataclass
class RenewalRequest:
    """What :meth:`CardDoor.renew` needs besides the card: the PIN and where progress goes.

    Attributes:
        pin: the PIN entered for this renewal (a :class:`~card.secret.Secret`, wiped when the run
            ends whatever the outcome), or a function returning it, called on the card thread
            only once the renewal is sure to send it (``renew_if_due``: after the check).
        progress: receives each step and each slot's outcome (``card.renewal.RenewalReporter``),
            on the card thread. None: no progress.
        between_slots: called on the card thread after each renewed certificate but the last
            (the portal's *Next*); False stops before the next certificate is touched.
        cancel: ends the renewal before its next certificate and any wait for the CA; None:
            the door's own (:meth:`CardDoor.cancel`).
        now: the clock (aware UTC) for expiry arithmetic; None: the system clock.
        refuse_last_try: with only one PIN try left, raise ``LastPinTryError`` instead of
            sending the PIN (asked with an empty VERIFY, which spends no try, SP 800-73-4 Part 2
            §3.2.1); a blocked PIN raises ``PinBlockedError`` without sending it.
        expect_card: the card id (GUID, ``CardSummary.card_id``) the PIN was typed for
            (``renew_if_due`` only): a card read in the same transaction with another id raises
            ``CardChangedError`` and the PIN is wiped unsent (the renewal queue: one PIN, one card).
    """

    pin: Secret | Callable[[], Secret]
    progress: RenewalReporter | None = None
    between_slots: Callable[[SlotResult], bool] | None = None
    cancel: threading.Event | None = None
    now: Callable[[], dt.datetime] | None = None
    refuse_last_try: bool = False
    expect_card: str | None = None
