"""What a renewal reports: progress steps, the per-slot and whole-run outcome, and the refusals
the engine raises (each a :class:`~card.errors.CardError` with a title, a code and a next step)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509

from card.errors import CardError
from card.piv import Slot
from card.token import KeyRef


class RenewalStep(enum.Enum):
    """Progress steps reported to the UI, in order."""

    PREFLIGHT = "Checking the card"
    AUTHORISING = "Authorising with the certificate authority"
    PENDING = "Pending"
    GENERATING = "Generating a new key on the card"
    REQUESTING = "Signing the certificate request"
    ISSUING = "Waiting for the certificate authority"
    VERIFYING = "Checking the new certificate"
    WRITING = "Writing"
    READING_BACK = "Reading back"
    TEST_SIGNATURE = "Test signature"
    DONE = "Done"
    FAILED = "Failed"


class RenewalRefused(CardError):
    """Renewal cannot start (nothing was changed): expired certificate, nothing due, bad preflight."""

    title = "Renewal not possible"
    code = "REFUSED"


class SlotChangedError(CardError):
    """A slot of an unfinished update holds a certificate that update did not write (DESIGN §3.4):
    someone else changed it (the RA re-issued it, another tool renewed it). It is left alone."""

    title = "Changed by someone else"
    code = "CHANGED"
    next_step = ("Nothing was done to this certificate. If you did not expect it to change, contact your "
                 "Registration Authority (RA) with the reference shown.")


class CardExpiredError(RenewalRefused):
    """The card's own expiry (CHUID expiration date, SP 800-73-4 Part 1 Table 9 tag 0x35) has passed."""

    title = "This card has expired"
    code = "CARD-EXPIRED"


class SlotKeyMismatchError(RenewalRefused):
    """The slot's private key does not match its certificate (a test signature does not verify with the
    certificate's public key): an earlier update was interrupted after GENERATE and its journal is gone
    or set aside. The CA then refuses the old key's proof of possession; only the RA can re-issue the
    slot. The run stops before any other slot is touched (break-it finding 8)."""

    title = "Key and certificate do not match"
    code = "KEY-MISMATCH"


class EndedBeforeChange(Exception):
    """Internal: the card or the CA refused this slot's step before anything in the slot changed."""

    def __init__(self, error: CardError) -> None:
        super().__init__(str(error))
        self.error = error


ProgressKey = Slot | KeyRef
"""What a progress step is about: a PIV slot, or a side-by-side token's key — the KeyRef of the key
being renewed (its old ``CKA_ID`` and label, the same for every step of that key, equal to its
:attr:`SlotResult.slot`). Both have ``.hex``; :func:`key_name` says what to call it."""


def key_name(key: ProgressKey) -> str:
    """What the holder calls ``key`` in a progress line: a PIV slot's number (``"9A"``); a token key's
    label (``"Authentication certificate"``), else its Key ID (``CKA_ID``) in hex."""
    if isinstance(key, KeyRef):
        return key.label or key.hex
    return key.hex


class RenewalReporter(Protocol):
    """Receives progress from the worker thread; implementations must be thread-safe.

    ``slot``: the PIV slot or token key the step is about (:data:`ProgressKey`), None for the whole
    card (PREFLIGHT)."""

    def step(self, slot: ProgressKey | None, step: RenewalStep, detail: str = "") -> None: ...

    def slot_finished(self, slot: ProgressKey, result: SlotResult) -> None: ...


class NullReporter:
    """A reporter that ignores everything (headless callers that want no progress)."""

    def step(self, slot: ProgressKey | None, step: RenewalStep, detail: str = "") -> None:
        pass

    def slot_finished(self, slot: ProgressKey, result: SlotResult) -> None:
        pass


@dataclass
class SlotResult:
    """The outcome of one slot: renewed (``new_certificate``), failed (``error``) or not attempted."""

    slot: Slot | KeyRef
    """The PIV slot, or a side-by-side token's key (both have ``.hex``: the name the CLI and the journal use)."""
    label: str
    old_certificate: x509.Certificate | None
    new_certificate: x509.Certificate | None = None
    error: CardError | None = None

    @property
    def renewed(self) -> bool:
        return self.new_certificate is not None and self.error is None


@dataclass
class RenewalResult:
    """The outcome of a whole renewal."""

    reference: str
    slots: list[SlotResult] = field(default_factory=list)
    error: CardError | None = None
    journal_kept: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.renewed for s in self.slots)

    @property
    def left_alone(self) -> list[SlotResult]:
        """Slots changed by someone else since an unfinished update (:class:`SlotChangedError`): they
        hold a certificate that is not ours to renew, and were rightly left alone."""
        return [s for s in self.slots if isinstance(s.error, SlotChangedError)]

    @property
    def ours_renewed(self) -> bool:
        """Every slot that was ours to renew was renewed (at least one); slots changed by someone else
        were left alone. The CLI reports this as "renewed" (exit 0) with a note per left-alone slot."""
        return (self.error is None and any(s.renewed for s in self.slots)
                and all(s.renewed or isinstance(s.error, SlotChangedError) for s in self.slots))
