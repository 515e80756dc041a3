"""Every attempt in the audit log, not only what changed a card (issue 15): a logon with a wrong or
blocked PIN, and each renewal run as a whole — renewed, partly renewed, aborted, cancelled,
refused, refused by the CA, wrong PIN — with whether it resumed an unfinished update. The engine's
per-slot records (``renewed``, ``refused``, ``failed`` …, :mod:`.records`) stay as they are; the
run record says how the attempt ended for the RA's "what failed" question.

Never raises: the attempt's own outcome is what the user must see (a record the log cannot take
is kept for the next write by :meth:`card.journal.AuditLog.write_quietly`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from card.enrollment.base import IssuerError, IssuerRejected
from card.errors import (
    CardError,
    CardRemovedError,
    InvalidPinError,
    LastPinTryError,
    OperationCancelled,
    PinBlockedError,
)
from card.journal import AuditLog
from card.renewal.context import RenewalContext
from card.renewal.results import RenewalResult
from card.token import Token

def error_outcome(error: BaseException) -> str:
    """The audit outcome of an attempt that ended with ``error``."""
    if isinstance(error, PinBlockedError):
        return "blocked"
    if isinstance(error, InvalidPinError):
        return "wrong_pin"
    if isinstance(error, OperationCancelled):
        return "cancelled"
    if isinstance(error, CardRemovedError):
        return "card_removed"
    if isinstance(error, IssuerRejected):
        return "ca_refused"
    if isinstance(error, IssuerError):
        return "ca_unreachable"
    return "refused" if isinstance(error, CardError) else "failed"


def result_outcome(result: RenewalResult) -> str:
    """The audit outcome of a run that returned ``result``."""
    if result.error is not None:
        return error_outcome(result.error)
    if result.ok or result.ours_renewed:
        return "renewed"
    renewed = sum(s.renewed for s in result.slots)
    stopped = [s for s in result.slots if s.error is not None and _NOT_STARTED in str(s.error)]
    if stopped and len(stopped) + renewed == len(result.slots):
        return "aborted" if renewed else "cancelled"  # stopped at *Next* ("abort this issuance") or by a signal
    return "partial" if renewed else "failed"


_NOT_STARTED = "cancelled before this certificate was started"
"""The engine's words for a slot it did not start because the run was stopped (:mod:`.engine`)."""


def audit_log_on(audit: AuditLog, error: BaseException | None, *, card_guid: str | None = None) -> None:
    """Audit a logon that failed with a wrong or blocked PIN (a successful logon changes nothing and
    is not recorded; the PIN never is). Other errors (card pulled) are not attempts at the PIN."""
    if isinstance(error, (InvalidPinError, PinBlockedError)):
        tries = error.attempts_remaining if isinstance(error, InvalidPinError) else 0
        audit.write_quietly(event="log_on", outcome=error_outcome(error), card_guid=card_guid, slot=None, tries_left=tries,
                            error_code=error.code)


ALREADY_PER_SLOT = frozenset({"renewed", "partial", "failed"})
"""Run outcomes the engine's per-slot records already tell (one ``renewed``/``failed``/``refused``
record per slot): no run record is added for them, so a count of ``renewed`` records stays one per
certificate."""


def audit_run(audit: AuditLog, *, result: RenewalResult | None = None, error: BaseException | None = None,
              card_guid: str | None = None, holder: str | None = None, resumed: bool = False) -> None:
    """The records of a renewal run that the engine's per-slot records do not tell: ``event =
    "renewal"`` with outcome ``wrong_pin`` (with ``tries_left``), ``blocked``, ``cancelled``, ``aborted``
    (stopped at *Next*), ``card_removed`` … and the journal's reference; and ``resumed`` when the run
    resumed an unfinished update. A refusal the engine recorded already (it set the reference) is
    not recorded twice."""
    base: dict[str, object] = {"event": "renewal", "card_guid": card_guid, "holder": holder, "slot": None}
    if resumed:
        audit.write_quietly(**base, outcome="resumed", reference=result.reference if result else None)
    if result is not None:
        outcome = result_outcome(result)
        if outcome not in ALREADY_PER_SLOT:
            audit.write_quietly(**base, outcome=outcome, reference=result.reference,
                                renewed=sum(s.renewed for s in result.slots),
                                error_code=result.error.code if result.error is not None else None)
        return
    if error is None:
        return
    outcome = error_outcome(error)
    if getattr(error, "reference", None) is not None and outcome in ("refused", "ca_refused", "ca_unreachable"):
        return  # the engine's refusal record carries it
    fields: dict[str, object] = {"outcome": outcome, "reference": getattr(error, "reference", None),
                                 "error_code": getattr(error, "code", type(error).__name__)}
    if isinstance(error, InvalidPinError):
        fields["tries_left"] = error.attempts_remaining
    audit.write_quietly(**base, **fields)


def run_audited(audit: AuditLog, ctx: RenewalContext, run: Callable[[], RenewalResult]) -> RenewalResult:
    """``run()`` (a renewal), with the records of :func:`audit_run` for how the attempt ended; the
    card as read for it (``ctx.card``: by the caller, or by the engine before it sent the PIN) names
    the card, holder and resume."""
    def audit_as(**outcome: Any) -> None:
        card = ctx.card
        card_guid, holder = (card.card_id, card.holder) if card else (None, None)
        resumed = bool(card and card.pending_journal is not None)
        audit_run(audit, card_guid=card_guid, holder=holder, resumed=resumed, **outcome)

    try:
        result = run()
    except Exception as exc:
        audit_as(error=exc)
        raise
    audit_as(result=result)
    return result


def refuse_last_try(token: Token) -> None:
    """Before the PIN is sent, in the renewal's own card transaction: refuse when one try is left.

    Raises:
        LastPinTryError: one try left; PinBlockedError: no try left (``69 83``).
    """
    retries = token.pin_tries_left()  # 0: blocked (PIV: 69 83)
    if retries == 0:
        raise PinBlockedError("The PIN is blocked.")
    if retries == 1:
        raise LastPinTryError("only 1 PIN try is left; a wrong PIN would block the card; run again with "
                              "--allow-last-pin-try or use the TUI")
