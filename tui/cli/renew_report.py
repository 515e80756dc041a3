"""``renew``'s report of a finished renewal: the outcome, each slot, the reference and the next step."""

from __future__ import annotations

import argparse

from card.errors import CardRemovedError, CardResetByOtherError, StateFileError, TokenStorageError
from card.service import RenewalResult, SlotResult
from tui.cli.exit_codes import EXIT_OK, EXIT_PARTIAL
from tui.cli.output import cli_next_step, out


def report_renewal(args: argparse.Namespace, result: RenewalResult, token: dict[str, object] | None = None) -> int:
    """Print the result (README, ``renew --json``) and return 0 (renewed) or 13 (not every certificate).
    ``token``: the card or token renewed, as ``status --json`` gives it (``renew --json``'s ``token``)."""
    slots = [_slot_json(r, r in result.left_alone) for r in result.slots]
    code, outcome, message, next_step = _outcome(result)
    next_step = cli_next_step(next_step)
    payload = {"outcome": outcome, "reference": result.reference, "slots": slots, "message": message,
               "next_step": next_step, "journal_kept": result.journal_kept, "token": token, "exit_code": code}
    lines = [message]
    for s in slots:
        if s["renewed"]:
            lines.append(f"  {s['label']} ({s['slot']}): renewed, new expiry {str(s['new_not_after'])[:10]}")
        else:
            lines.append(f"  {s['label']} ({s['slot']}): "
                         + ("left alone" if s["left_alone"] else "NOT renewed") + f" — {s['error']}")
    lines.append(f"Reference: {result.reference}")
    if next_step:
        lines.append(f"Next step: {next_step}")
    out(args, payload, "\n".join(lines))
    return code


def _slot_json(r: SlotResult, left_alone: bool) -> dict[str, object]:
    return {
        "slot": r.slot.hex,
        "label": r.label,
        "renewed": r.renewed,
        "old_serial": f"{r.old_certificate.serial_number:X}" if r.old_certificate else None,
        "new_serial": f"{r.new_certificate.serial_number:X}" if r.new_certificate else None,
        "new_not_after": r.new_certificate.not_valid_after_utc.isoformat() if r.new_certificate else None,
        "error": str(r.error) if r.error else None,
        "left_alone": left_alone,
    }


def _outcome(result: RenewalResult) -> tuple[int, str, str, str | None]:
    """(exit code, ``outcome``, message, next step in the card layer's words)."""
    if result.ok:
        return (EXIT_OK, "renewed",
                "Your certificates have been renewed. Log off, remove your card, and log back on to test it.", None)
    if result.ours_renewed:  # the rest was changed by someone else (the RA): theirs, valid, left alone
        message = ("Your certificates have been renewed; "
                   + ", ".join(f"{r.label} ({r.slot.hex})" for r in result.left_alone)
                   + " had been changed by someone else and was left alone. Log off, remove your card, and log "
                   "back on to test it.")
        first = result.left_alone[0].error
        return EXIT_OK, "renewed", message, first.next_step if first is not None else None
    message = "The operation was completed with errors."
    err = result.error
    if isinstance(err, (CardResetByOtherError, TokenStorageError)):  # the card never left: its own words (F-19)
        next_step = err.next_step
    elif isinstance(err, CardRemovedError):
        next_step = "Re-insert your card and run `cardrenew renew` again: the update resumes where it stopped."
    elif isinstance(err, StateFileError):
        message = f"The operation was completed with errors: {err}."
        next_step = err.next_step
    elif not result.journal_kept:  # nothing to resume: never send the user round in a loop (issue 11)
        first = err or next((r.error for r in result.slots if r.error is not None), None)
        next_step = (first.next_step if first is not None and first.next_step else
                     f"Contact your Registration Authority with reference {result.reference}.")
    else:
        next_step = (f"Run `cardrenew renew` again. If the error persists, contact your Registration Authority "
                     f"with reference {result.reference}.")
    return EXIT_PARTIAL, "completed_with_errors", message, next_step
