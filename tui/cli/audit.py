"""``cardrenew audit``: the newest audit records, as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys

from card.demo import demo_state_dir
from card.journal import AuditLog, JournalStore, flush_kept_audit
from tui.cli.exit_codes import EXIT_OK
from tui.cli.output import settings_for, warn


def cmd_audit(args: argparse.Namespace) -> int:
    """Print the newest ``-n`` audit records as JSON lines (stdout); what is not a record (a torn or
    foreign line) is skipped with a warning, and an absent or empty log is said in words (stderr)."""
    state_dir = demo_state_dir() if getattr(args, "demo", False) else settings_for(args).state_dir
    log = AuditLog(state_dir / "audit.log")
    kept = flush_kept_audit(JournalStore(state_dir), log)  # records an earlier run could not write
    if kept is not None:
        warn(f"cardrenew: warning: {kept}")
    reading = log.read(args.n)
    for number, why in reading.skipped:
        where = f"line {number}" if number is not None else "a line"
        warn(f"cardrenew: warning: {where} of {log.path} is not an audit record ({why}); skipped")
    for entry in reading.entries:
        print(json.dumps(entry, sort_keys=True))
    if not reading.exists:
        print(f"No audit log at {log.path} yet: no renewal has been recorded there.", file=sys.stderr)
    elif not reading.entries and args.n != 0:
        print(f"The audit log {log.path} holds no records" + (" (only lines that are not records)."
                                                              if reading.skipped else " (it is empty)."),
              file=sys.stderr)
    return EXIT_OK
