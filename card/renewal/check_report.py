"""What the dry run (:mod:`card.renewal.check`) reports: one :class:`CheckItem` per check, passed,
failed (with the next step and an error code) or skipped (with why), gathered in a :class:`CheckReport`.
Plain values; the CLI (``renew --check``) and the Card tab's *Check* show them."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from card import check_words
from card.words import Words
from card.errors import CardError
from card.secret import Secret


class CheckOutcome(enum.Enum):
    """How one check of the dry run ended."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class CheckItem:
    """One check's outcome.

    Attributes:
        check: its stable id, a key of :data:`card.check_words.CHECK_TITLES` (``"ca"``, ``"pin"`` …).
        message: what was found, a clause (no full stop).
        next_step: what to do (a failure always has one; a pass may suggest one).
        slot: the PIV slot (``"9A"``) of a per-slot check, else None.
        code: a failure's error code (``CardError.code``: ``MGMTKEY``, ``CA-DOWN`` …), else None.
    """

    check: str
    outcome: CheckOutcome
    message: str
    next_step: str = ""
    slot: str | None = None
    code: str | None = None

    @property
    def title(self) -> str:
        name = check_words.CHECK_TITLES[self.check]
        return f"{name} ({self.slot})" if self.slot else name


@dataclass
class CheckReport:
    """Every check of one dry run, in the order they ran, with the card they ran on."""

    reader: str
    items: list[CheckItem] = field(default_factory=list)
    card_id: str | None = None
    guid_text: str | None = None
    holder: str | None = None

    def count(self, outcome: CheckOutcome) -> int:
        return sum(1 for item in self.items if item.outcome is outcome)

    @property
    def failed(self) -> list[CheckItem]:
        return [item for item in self.items if item.outcome is CheckOutcome.FAILED]

    @property
    def ok(self) -> bool:
        """No check failed (skipped ones may remain)."""
        return not self.failed

    def summary(self) -> Words:
        return check_words.check_summary(self.count(CheckOutcome.PASSED), self.count(CheckOutcome.FAILED),
                                   self.count(CheckOutcome.SKIPPED))


def passed(check: str, message: str, next_step: str = "", slot: str | None = None) -> CheckItem:
    return CheckItem(check, CheckOutcome.PASSED, message, next_step, slot)


def failed(check: str, exc: CardError, slot: str | None = None) -> CheckItem:
    return CheckItem(check, CheckOutcome.FAILED, str(exc), exc.next_step or "", slot, exc.code)


def skipped(check: str, why: str, next_step: str = "", slot: str | None = None) -> CheckItem:
    return CheckItem(check, CheckOutcome.SKIPPED, why, next_step, slot)


def colon_hex(fp: str) -> str:
    """A SHA-256 fingerprint as ``AB:CD:…`` (how certificate viewers show it)."""
    return ":".join(fp[i:i + 2] for i in range(0, len(fp), 2)).upper()


@dataclass
class CheckRequest:
    """What :meth:`card.service.CardDoor.check` (the dry run) needs besides the card.

    Attributes:
        pin: the PIN (a :class:`~card.secret.Secret`, wiped when the check ends), or None: the checks
            that need it are skipped and the report says which.
        refuse_last_try: with one PIN try left, do not send the PIN (the PIN check is skipped).
        issuer_error: why the configured issuer could not be opened (the backend was assembled without
            one); the CA check reports it.
        now: the clock (aware UTC); None: the system clock.
    """

    pin: Secret | None = None
    refuse_last_try: bool = True
    issuer_error: CardError | None = None
    now: Callable[[], dt.datetime] | None = None
