"""``cardrenew audit``: the audit records — the newest as JSON lines, or an export for the RA
(``--since``, ``--outcome``, ``--format csv|json``), or ``--verify``: is the log as it was written
(the chain of :mod:`card.journal.audit_chain`)."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import sys
from collections.abc import Iterable
from typing import Any

from card.demo import demo_state_dir
from card.errors import StateFileError
from card.journal import AuditLog, JournalStore, flush_kept_audit, outcome_kind, shown_guid, verify_chain
from tui.cli.exit_codes import EXIT_AUDIT_BROKEN, EXIT_OK
from tui.cli.output import settings_for, warn

CSV_COLUMNS = ("time", "event", "outcome", "reference", "card_guid", "holder", "slot", "error_code", "tries_left",
               "resumed", "renewed", "not_renewed", "old_serial", "old_not_after", "new_serial", "new_not_after",
               "operator", "host", "ssh_client", "terminal", "written_late", "event_id")
"""The CSV export's columns, in order (a record's other fields are left out of CSV; JSON has them all)."""
DEFAULT_COUNT = 20
"""Records printed without ``-n`` and without an export option."""


def cmd_audit(args: argparse.Namespace) -> int:
    """Print audit records (stdout); what is not a record (a torn or foreign line) is skipped with a
    warning, and an absent or empty log is said in words (stderr). ``--verify``: exit 15 when the
    log was edited or cut."""
    state_dir = demo_state_dir() if getattr(args, "demo", False) else settings_for(args).state_dir
    log = AuditLog(state_dir / "audit.log")
    if args.verify:
        return _verify(log)
    kept = flush_kept_audit(JournalStore(state_dir), log)  # records an earlier run could not write
    if kept is not None:
        warn(f"cardrenew: warning: {kept}")
    export = args.since is not None or args.outcome is not None or args.format != "lines"
    count = args.n if args.n is not None else (None if export else DEFAULT_COUNT)
    reading = log.read(None if export else count)
    for number, why in reading.skipped:
        where = f"line {number}" if number is not None else "a line"
        warn(f"cardrenew: warning: {where} of {log.path} is not an audit record ({why}); skipped")
    if reading.truncated:
        warn(f"cardrenew: warning: {log.path} is large; only its newest records were read")
    entries = [e for e in reading.entries if _wanted(e, args.since, args.outcome)]
    if export and count is not None:
        entries = entries[-count:] if count > 0 else []
    _print(entries, args.format)
    if not reading.exists:
        print(f"No audit log at {log.path} yet: no renewal has been recorded there.", file=sys.stderr)
    elif not reading.entries and count != 0:
        print(f"The audit log {log.path} holds no records" + (" (only lines that are not records)."
                                                              if reading.skipped else " (it is empty)."),
              file=sys.stderr)
    elif not entries and count != 0:
        print("No audit record matches.", file=sys.stderr)
    return EXIT_OK


def _wanted(entry: dict[str, Any], since: dt.datetime | None, outcome: str | None) -> bool:
    if since is not None and dt.datetime.fromisoformat(entry["time"]).astimezone(dt.timezone.utc) < since:
        return False
    if outcome is None:
        return True
    if outcome in ("ok", "failed"):
        return outcome_kind(entry.get("outcome")) == outcome
    return bool(entry.get("outcome") == outcome)


def _print(entries: list[dict[str, Any]], form: str) -> None:
    """Print the records; a card GUID written before it was kept as ``status`` shows it (32 bare hex
    digits) is printed that way too, so one filter finds a card's records old and new (break-it B-3)."""
    entries = [{**e, "card_guid": shown_guid(e["card_guid"])} if isinstance(e.get("card_guid"), str) else e
               for e in entries]
    if form == "json":
        print(json.dumps(entries, indent=2, sort_keys=True))
    elif form == "csv":
        sys.stdout.write(csv_text(entries))
    else:
        for entry in entries:
            print(json.dumps(entry, sort_keys=True))


def csv_text(entries: Iterable[dict[str, Any]]) -> str:
    """The records as CSV (RFC 4180, a header row, :data:`CSV_COLUMNS`). Text from outside (holder
    names, reasons) that a spreadsheet would run as a formula (``= + - @``, tab, CR) gets a leading
    ``'`` (OWASP "CSV injection")."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow([_cell(entry.get(column)) for column in CSV_COLUMNS])
    return buffer.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = json.dumps(value) if isinstance(value, (dict, list, bool)) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _verify(log: AuditLog) -> int:
    try:
        report = verify_chain(log.path)
    except OSError as exc:
        raise StateFileError(f"cardrenew could not read {exc.filename or log.path}: {exc.strerror or exc}",
                             next_step="Check the file's type and permissions, then run `cardrenew audit --verify` "
                                       "again.") from exc
    for number, words in report.notes:
        warn(f"cardrenew: note: {_where(log, number)}{words}")
    for number, words in report.problems:
        print(f"{_where(log, number)}{words}")
    if not report.exists:
        print(f"No audit log at {log.path} yet: nothing to verify.", file=sys.stderr)
        return EXIT_OK
    if report.intact:
        print(f"The audit log {log.path}: {report.chained} chained records are as they were written (the chain and "
              "its head file agree)." + (f" {report.unchained} records written before the log was chained cannot be "
                                         "checked: compare them with the system log or a backup." if report.unchained
                                         else ""))
        return EXIT_OK
    print(f"The audit log {log.path} was changed after it was written ({len(report.problems)} "
          f"problem{'s' if len(report.problems) != 1 else ''} above). Keep this copy and compare it with the "
          "records in the system log (syslog) or a backup.")
    return EXIT_AUDIT_BROKEN


def _where(log: AuditLog, number: int | None) -> str:
    return f"{log.path.name} line {number}: " if number is not None else f"{log.path.name}: "
