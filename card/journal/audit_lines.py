"""One line of the audit log as a record (DESIGN §8): the parser shared by the log, its chain and
``cardrenew audit``. Outside data: whatever is in the file is refused with a reason, never raised
as anything but :class:`AuditLineError`."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, cast

MAX_AUDIT_LINE_BYTES = 64 << 10
"""An audit line longer than this (64 KiB) is skipped as foreign."""


class AuditLineError(ValueError):
    """An audit log line that is not one of our records (torn, foreign, not UTF-8, too long)."""


def parse_audit_line(line: bytes) -> dict[str, Any]:
    """One line of the audit log (without its newline) as a record.

    Raises:
        AuditLineError: the reason in words; nothing else.
    """
    if len(line) > MAX_AUDIT_LINE_BYTES:
        raise AuditLineError(f"longer than {MAX_AUDIT_LINE_BYTES} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise AuditLineError("not UTF-8 text") from None
    try:
        record = json.loads(text)
    except RecursionError:
        raise AuditLineError("nested too deeply") from None
    except ValueError:
        raise AuditLineError("not a JSON record (a torn or foreign line)") from None
    check_audit_record(record)
    return cast("dict[str, Any]", record)  # check_audit_record refused anything but such a dict


def check_audit_record(record: object) -> None:
    if not isinstance(record, dict):
        raise AuditLineError(f"a JSON {type(record).__name__}, not an audit record")
    when = record.get("time")
    if not isinstance(when, str):
        raise AuditLineError("not an audit record (no time)")
    try:
        dt.datetime.fromisoformat(when)
    except ValueError:
        raise AuditLineError("not an audit record (its time is not a date)") from None


SUCCESS_OUTCOMES = frozenset({"renewed", "changed", "nothing_due"})
"""Outcomes that are not failures (``cardrenew audit --outcome failed`` leaves them out)."""
NOTE_OUTCOMES = frozenset({"journal_set_aside", "resumed"})
"""Outcomes that are facts, neither success nor failure."""


def outcome_kind(outcome: object) -> str:
    """``"ok"``, ``"note"`` or ``"failed"``: how ``cardrenew audit --outcome ok|failed`` groups an
    outcome (every outcome that is neither a success nor a note is a failure)."""
    if outcome in SUCCESS_OUTCOMES:
        return "ok"
    return "note" if outcome in NOTE_OUTCOMES or outcome is None else "failed"
