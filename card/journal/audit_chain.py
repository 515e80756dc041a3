"""The audit log's chain (issue 15): every record holds ``prev``, the SHA-256 (hex) of the line
written before it, and a head file beside the log (``audit.log.head``: the hash and the file size
after the newest line) says where the log ended, so that :func:`verify_chain` shows where a log was
edited, had lines removed or inserted, or was cut at the end.

The chain shows edits and cuts; it is not a signature — whoever can write the file can also write
a new chain. The record each run sends to the system log (``[audit] syslog``) is the copy on another
host that an edit here cannot reach.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from card import atomic
from card.journal.audit_lines import AuditLineError, parse_audit_line

GENESIS = "0" * 64
"""``prev`` of the first record of a log (no line before it)."""
MAX_VERIFY_BYTES = 256 << 20
"""``cardrenew audit --verify`` reads at most 256 MiB (a larger log is refused, never read in part)."""


def line_hash(line: bytes) -> str:
    """SHA-256 (hex) of one log line without its newline: the ``prev`` of the record after it."""
    return hashlib.sha256(line).hexdigest()


def head_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".head")


def chained(record: dict[str, Any], last: bytes | None) -> str:
    """The JSON line of ``record`` with its ``prev``: the hash of ``last`` (the log's last line;
    GENESIS for an empty log; None — a log we cannot read back — gives no ``prev``)."""
    body = {k: v for k, v in record.items() if k != "prev"}
    if last is not None:
        body["prev"] = line_hash(last) if last else GENESIS
    return json.dumps(body, sort_keys=True)


def write_head(log_path: Path, line: bytes, size: int) -> None:
    """Record where the log ends now: the newest line's hash and the file's size (bytes).

    Raises:
        OSError: as :func:`card.atomic.write_atomic`.
    """
    atomic.write_atomic(head_path(log_path), json.dumps({"last": line_hash(line), "size": size}, sort_keys=True) + "\n")


@dataclass
class ChainReport:
    """What :func:`verify_chain` found. ``problems`` are ``(line number or None, words)``: an empty
    list means the log is as it was written. ``notes`` are facts that are not tampering (records
    from before chaining, lines that are not records)."""

    path: Path
    exists: bool
    records: int = 0
    chained: int = 0
    """Records that carry a link (``prev``): only these are proven by the chain."""
    unchained: int = 0
    """Records written before the log was chained: nothing proves them (tester F-25)."""
    lines: int = 0
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    notes: list[tuple[int | None, str]] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def verify_chain(log_path: Path) -> ChainReport:
    """Walk the log and its head file: each record's ``prev`` must be the hash of the line before
    it, and the head file must name the last line and the size.

    Raises:
        OSError: the log or head file exists but cannot be read (not a regular file, no
            permission, larger than :data:`MAX_VERIFY_BYTES`).
    """
    report = ChainReport(Path(log_path), exists=True)
    try:
        data = atomic.read_regular(log_path, MAX_VERIFY_BYTES)
    except FileNotFoundError:
        report.exists = False
        data = b""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    report.lines = len(lines)
    previous: bytes | None = None
    chain_started = False
    for number, line in enumerate(lines, 1):
        _check_line(report, number, line, previous, chain_started)
        if b'"prev"' in line:
            chain_started = True
        previous = line
    _check_head(report, data, lines, chain_started)
    return report


def _check_line(report: ChainReport, number: int, line: bytes, previous: bytes | None, chain_started: bool) -> None:
    try:
        record = parse_audit_line(line)
    except AuditLineError as exc:
        report.notes.append((number, f"not an audit record ({exc})"))
        return
    report.records += 1
    prev = record.get("prev")
    if prev is None:
        report.unchained += 1
        if chain_started:
            report.problems.append((number, "this record has no link to the line before it, though the records "
                                            "before it are chained: it was edited or inserted"))
        else:
            report.notes.append((number, "written before the log was chained"))
        return
    report.chained += 1
    expected = GENESIS if previous is None else line_hash(previous)
    if prev != expected:
        before = "the start of the file" if previous is None else f"line {number - 1}"
        report.problems.append((number, f"does not follow {before}: {before} was edited, or lines were removed or "
                                        f"inserted before line {number}"))


def _check_head(report: ChainReport, data: bytes, lines: list[bytes], chain_started: bool) -> None:
    path = head_path(report.path)
    try:
        head = json.loads(atomic.read_regular(path, 4096))
        last, size = head["last"], head["size"]
        if not isinstance(last, str) or not isinstance(size, int) or isinstance(size, bool):
            raise ValueError("wrong types")
    except FileNotFoundError:
        if chain_started:
            report.problems.append((None, f"{path.name} is missing: whether the end of the log was cut cannot be told"))
        return
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        report.problems.append((None, f"{path.name} is not a head record: whether the end of the log was cut "
                                      "cannot be told"))
        return
    hashes = [line_hash(line) for line in lines]
    if hashes and hashes[-1] == last:
        if len(data) != size and not report.problems:  # the chain held, yet the size moved
            report.problems.append((None, f"the log is {len(data)} bytes, but {size} bytes had been written when "
                                          "its newest record was added: lines were removed or inserted"))
    elif last in hashes:
        extra = len(hashes) - 1 - hashes.index(last)
        report.notes.append((None, f"{extra} line(s) after the newest record the head file names (it could not be "
                                   "updated, or another program appended them)"))
    elif len(data) < size:
        report.problems.append((report.lines or None, f"the log was cut: it is {len(data)} bytes, but {size} bytes "
                                                      "had been written when its newest record was added"))
    else:
        report.problems.append((report.lines or None, "the newest record the head file names is not there: the "
                                                      "log was edited or cut and written again"))
