"""``cardrenew status``: the card's certificates, expiry, days left and whether a renewal is due.

Exit codes: 0 nothing due, 10 some certificate is due, 11 a certificate expired, a slot is
unreadable, the PIN is blocked, the card itself expires within the renewal window, or a slot's key
does not match its certificate (``key_mismatch``); 13 a slot does not work until an unfinished update
is finished (``unfinished``: run ``renew``).
"""

from __future__ import annotations

import argparse
import datetime as dt

from card import backend as assembly  # called through the module: tests put an in-process card there
from card.certificates import fingerprint
from card.config import Settings
from card.service import CardSummary, SlotState, SlotStatus, card_expiry_words, slot_condition, update_check
from card.words import pin_state, renewal_mode, renewal_mode_words, token_name
from tui.cli.demo import cli_demo_backend
from tui.cli.exit_codes import EXIT_NOT_DUE, EXIT_OK, EXIT_PARTIAL, EXIT_REFUSED
from tui.cli.output import out, print_notices, settings_for


def summary_json(summary: CardSummary, window_days: int, ra_contact: str = "your Registration Authority (RA)"
                 ) -> dict[str, object]:
    """``status --json`` (README, *JSON output*): the card and one object per configured slot."""
    nxt = summary.next_renewal_date(window_days)
    return {
        "reader": summary.reader,
        "card_guid": summary.guid_text,
        "card_expiry": summary.card_expiry.isoformat() if summary.card_expiry else None,
        "holder": summary.holder,
        "pin_retries": summary.pin_retries,
        "window_days": window_days,
        "update": update_check(summary).name.lower(),
        "next_renewal_date": nxt.isoformat() if nxt else None,
        "pending_reference": summary.pending_journal.reference if summary.pending_journal else None,
        "token": token_json(summary),
        "slots": [_slot_json(s, slot_condition(summary, s, ra_contact)) for s in summary.slots],
    }


def token_json(summary: CardSummary) -> dict[str, object]:
    """``status --json``'s ``token``: who the card or token is (issue 14; README, *JSON output*)."""
    info = summary.info
    return {"interface": str(info.interface), "label": info.label, "manufacturer": info.manufacturer,
            "model": info.model, "serial": info.serial, "name": token_name(info),
            "renewal_mode": renewal_mode(info.side_by_side)}


def _slot_json(s: SlotStatus, condition: tuple[str, str] | None) -> dict[str, object]:
    return {
        "slot": s.name,
        "label": s.setting.label,
        "state": condition[0] if condition else s.state.name.lower(),
        "subject": s.certificate.subject.rfc4514_string() if s.certificate else None,
        "issuer": s.certificate.issuer.rfc4514_string() if s.certificate else None,
        "serial": f"{s.certificate.serial_number:X}" if s.certificate else None,
        "not_after": s.certificate.not_valid_after_utc.isoformat() if s.certificate else None,
        "days_left": s.days_left,
        "sha256": fingerprint(s.certificate) if s.certificate else None,
        "error": s.error,
        "note": condition[1] if condition else s.note,  # the certificate's own note is not about a slot that does not work
    }


def cmd_status(args: argparse.Namespace) -> int:
    """Read the card (no PIN) and print what it holds; returns 0, 10 or 11 (module docstring)."""
    settings = settings_for(args)
    if args.demo:
        backend = cli_demo_backend(args, settings)
        settings = backend.settings
    else:
        backend = assembly.card_backend(settings, args.reader, with_issuer=False)
    try:
        summary = backend.read_card().result()
    finally:
        backend.close()
        print_notices(backend)
    payload = summary_json(summary, settings.window_days, settings.ra_contact)
    card_words = card_expiry_words(summary.card_expiry, settings.window_days, dt.datetime.now(dt.timezone.utc),
                                   settings.ra_contact)
    code = EXIT_OK
    conditions = {slot_condition(summary, s, settings.ra_contact) for s in summary.slots} - {None}
    unfinished = {s.name for s in summary.slots if (c := slot_condition(summary, s, settings.ra_contact)) and c[0] == "unfinished"}
    if (any(s.state in (SlotState.EXPIRED, SlotState.UNREADABLE) and s.name not in unfinished  # a placeholder: renew finishes it
            for s in summary.slots) or summary.pin_retries == 0
            or card_words is not None  # the card itself expired or expires within the window: renew refuses
            or any(c[0] == "key_mismatch" for c in conditions if c)):
        code = EXIT_REFUSED
    elif conditions:  # a slot does not work until the unfinished update is finished: run renew
        code = EXIT_PARTIAL
    elif any(s.state is SlotState.DUE for s in summary.slots):
        code = EXIT_NOT_DUE
    payload["exit_code"] = code
    out(args, payload, "\n".join(status_lines(summary, settings, card_words)))
    return code


def status_lines(summary: CardSummary, settings: Settings, card_words: str | None) -> list[str]:
    """The text ``status`` prints: reader, card, holder, PIN, one line per slot, then notes."""
    info = summary.info
    mode = renewal_mode_words(info.side_by_side)
    card = (f"Card:    {summary.guid_text or 'no CHUID'}" if info.interface == "piv" else f"Token:   {token_name(info)}")
    lines = [f"Reader:  {summary.reader}", card + (f", expires {summary.card_expiry.isoformat()}" if summary.card_expiry else ""),
             f"Holder:  {summary.holder or 'unknown'}",
             "PIN:     " + pin_state(summary.pin_retries, settings.ra_contact, counted=info.interface == "piv"),
             f"Renewal: {mode.title} — {mode.message}"]
    for s in summary.slots:
        condition = slot_condition(summary, s, settings.ra_contact)
        if s.certificate is not None and condition is not None:
            lines.append(f"  {s.setting.label} ({s.name}): {condition[1]} (The certificate shown expires "
                         f"{s.certificate.not_valid_after_utc.date().isoformat()}.)")
        elif s.certificate is not None:
            lines.append(f"  {s.setting.label} ({s.name}): {s.state.value}, expires "
                         f"{s.certificate.not_valid_after_utc.date().isoformat()} ({s.days_left} days left)"
                         + (f" — note: {s.note}" if s.note else ""))
        else:
            lines.append(f"  {s.setting.label} ({s.name}): {s.state.value}" + (f" — {s.error}" if s.error else ""))
    if card_words is not None:
        lines.append(card_words)
    if summary.pending_journal:
        lines.append(f"An unfinished update (reference {summary.pending_journal.reference}) will be resumed by "
                     "`cardrenew renew`.")
    return lines
