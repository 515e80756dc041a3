"""The audit log (DESIGN §8): JSON lines, appended, mode 0600; never holds a secret.

Audit line: one JSON object per line with ``time`` (ISO 8601 UTC), ``event_id``, ``operator``,
``host``, ``terminal``, ``ssh_client``, ``prev`` (the chain: :mod:`card.journal.audit_chain`) and
the event's fields (``reference``, ``card_guid``, ``slot``, ``outcome``,
``error_code``, ``old_serial``, ``old_not_after``, ``new_serial``, ``new_not_after``; ``written_late``
when it was written by a later run because the log could not be written at the time).
"""

from __future__ import annotations

import datetime as dt
import errno as errno_module
import json
import logging
import os
import pwd
import secrets
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from card import atomic
from card.errors import StateFileError
from card.journal.audit_chain import chained, write_head
from card.journal.audit_lines import AuditLineError, parse_audit_line
from card.journal.statefiles import state_file_error

logger = logging.getLogger("card.journal")  # the name the journal's warnings always had

MAX_AUDIT_READ_BYTES = 16 << 20
"""``cardrenew audit`` reads at most the last 16 MiB of the log."""


@dataclass(frozen=True)
class AuditReading:
    """What :meth:`AuditLog.read` found: the records (oldest first) and the lines it skipped,
    as ``(line number or None when the start of the file was not read, reason)``."""

    entries: list[dict[str, Any]]
    skipped: list[tuple[int | None, str]]
    exists: bool
    truncated: bool = False
    """Only the last :data:`MAX_AUDIT_READ_BYTES` of the file were read."""


def shown_guid(card_id: str) -> str:
    """A card's GUID as ``status`` and the Card tab show it (8-4-4-4-12, upper case), so the GUID a
    holder reads off the screen is found in the log; any other card id (``p11-…``) as it is."""
    try:
        if len(card_id) == 32:
            return str(uuid.UUID(hex=card_id)).upper()
    except ValueError:
        pass
    return card_id


class AuditLog:
    """Append-only JSON-lines audit log (DESIGN §8), mode 0600. Never holds a secret.

    A record that cannot be appended is kept: in the journal of the renewal it belongs to (the
    engine puts it there before it is appended) and in a side file ``<log>.pending``; the next
    write flushes those first, each exactly once (records carry an ``event_id``).
    """

    def __init__(self, path: Path, forward: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Args:
            path: the audit file.
            forward: also called with each record once it is in the file (``[audit] syslog``:
                :class:`~card.journal.audit_syslog.SyslogForwarder`); never raises.
        """
        self.path = Path(path)
        self.forward = forward

    @property
    def pending_path(self) -> Path:
        return self.path.with_name(self.path.name + ".pending")

    def record(self, **event: Any) -> dict[str, Any]:
        """A new audit record: the event's fields plus ``time``, ``event_id`` and who and where
        (:func:`operator_fields`: ``operator``, ``host``, ``terminal``, ``ssh_client``)."""
        if isinstance(guid := event.get("card_guid"), str):
            event["card_guid"] = shown_guid(guid)
        return {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "event_id": secrets.token_hex(8), **operator_fields(), **event}

    def append(self, record: dict[str, Any]) -> None:
        """Append ``record`` (first flushing records kept from earlier failures).

        Raises:
            StateFileError: the log could not be written.
        """
        self.flush_side_file()
        self._append(record)

    def _append(self, record: dict[str, Any], changed: bool = True) -> None:
        """Append ``record`` chained to the line before it (``prev``), then move the head file on.
        A head file that cannot be written is logged, not raised: the record is in the log, and
        ``cardrenew audit --verify`` says the head is behind."""
        try:
            atomic.make_directory(self.path.parent)
            appended = atomic.append_line_after(self.path, lambda last: chained(record, last))
        except OSError as exc:
            raise state_file_error(exc, "the audit log", self.path, changed=changed) from exc
        try:
            write_head(self.path, appended.line, appended.size)
        except OSError as exc:
            logger.warning("audit log head file not updated (%s): `cardrenew audit --verify` will say so", exc)
        if self.forward is not None:
            self.forward(record)

    def write(self, **event: Any) -> dict[str, Any]:
        """Record an event now. When the log cannot be written the record is kept in the side
        file (if that can be written) for the next write.

        Raises:
            StateFileError: the log could not be written.
        """
        record = self.record(**event)
        try:
            self.append(record)
        except StateFileError:
            self.keep(record)
            raise
        return record

    def write_quietly(self, **event: Any) -> StateFileError | None:
        """:meth:`write`, returning the error instead of raising it (for events that must not
        stop what is going on, e.g. a journal set aside while only reading the card)."""
        try:
            self.write(**event)
        except StateFileError as exc:
            logger.warning("audit record not written (%s): %s", exc, json.dumps(event, sort_keys=True, default=str))
            return exc
        return None

    def keep(self, record: dict[str, Any]) -> bool:
        """Keep a record for the next write in the side file; False when that fails too (then
        the record is logged as a warning, the last place it can go)."""
        try:
            atomic.append_line(self.pending_path, json.dumps(record, sort_keys=True))
            return True
        except OSError as exc:
            logger.error("audit record could not be written or kept (%s): %s", exc, json.dumps(record, sort_keys=True))
            return False

    def flush_side_file(self, changed: bool = True) -> None:
        """Write the records kept in the side file (each once), then remove it.

        Args:
            changed: for the error's words: the card was changed in this run.

        Raises:
            StateFileError: the log could not be written (the side file is kept).
        """
        if atomic.kind_of(self.pending_path) is None:
            return
        try:
            data = atomic.read_regular(self.pending_path, MAX_AUDIT_READ_BYTES, tail=True)
        except OSError as exc:
            logger.warning("cannot read the kept audit records %s: %s", self.pending_path, exc)
            return
        records = []
        for line in data.split(b"\n"):
            if line.strip():
                try:
                    records.append(parse_audit_line(line))
                except AuditLineError:
                    continue
        self.flush(records, changed=changed)
        try:
            atomic.remove_file(self.pending_path)
        except OSError as exc:
            raise state_file_error(exc, "the audit log", self.pending_path, changed=changed) from exc

    def flush(self, records: list[dict[str, Any]], changed: bool = True) -> None:
        """Append each record that is not in the log yet (by ``event_id``), marked ``written_late``.

        Raises:
            StateFileError: the log could not be written.
        """
        if not records:
            return
        present = self._event_ids(changed)
        for record in records:
            event_id = record.get("event_id")
            if event_id is not None and event_id in present:
                continue
            self._append({**record, "written_late": True}, changed)
            if event_id is not None:
                present.add(event_id)

    def _event_ids(self, changed: bool) -> set[str]:
        try:
            data = atomic.read_regular(self.path, 1 << 30, tail=True)
        except FileNotFoundError:
            return set()
        except OSError as exc:
            raise state_file_error(exc, "the audit log", self.path, changed=changed) from exc
        ids: set[str] = set()
        for line in data.split(b"\n"):
            if b"event_id" not in line:
                continue
            try:
                event_id = parse_audit_line(line).get("event_id")
            except AuditLineError:
                continue
            if isinstance(event_id, str):
                ids.add(event_id)
        return ids

    def check_path(self) -> None:
        """The log is a regular file that can be opened for appending, or absent.

        Raises:
            StateFileError: naming the path and the next step (nothing was changed).
        """
        kind = atomic.kind_of(self.path)
        if kind not in (None, "file"):
            raise state_file_error(atomic.NotRegularFileError(errno_module.EINVAL, "not a regular file", str(self.path)),
                                   "the audit log", self.path)
        if kind == "file":
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
                os.close(fd)
            except OSError as exc:
                raise state_file_error(exc, "the audit log", self.path) from exc

    def read(self, count: int | None = 20) -> AuditReading:
        """The last ``count`` records (None: all that were read), skipping lines that are not
        records, each with the reason.

        Raises:
            StateFileError: the log exists but cannot be read (not a regular file, no permission).
        """
        try:
            data = atomic.read_regular(self.path, MAX_AUDIT_READ_BYTES, tail=True)
        except FileNotFoundError:
            return AuditReading([], [], exists=False)
        except OSError as exc:
            error = state_file_error(exc, "the audit log", self.path)
            error.args = (str(error).replace("could not write", "could not read").replace(
                "; nothing was changed on the card", ""),)
            error.title = "A file cardrenew keeps could not be read"
            if error.next_step:  # reading it is `cardrenew audit`, not a renewal
                error.next_step = error.next_step.replace("`cardrenew renew`", "`cardrenew audit`")
            raise error from exc
        truncated = False
        skipped_cut: list[tuple[int | None, str]] = []
        lines = data.split(b"\n")
        try:
            truncated = os.stat(self.path).st_size > MAX_AUDIT_READ_BYTES
        except OSError:
            pass
        if truncated:
            if len(lines) <= 2 and not any(lines[1:]):  # the newest bytes read hold no line start
                skipped_cut = [(None, f"a line longer than the {MAX_AUDIT_READ_BYTES >> 20} MiB read (not a record)")]
            lines = lines[1:]  # the first one is cut
        if lines and lines[-1] == b"":
            lines.pop()
        entries: list[tuple[int | None, dict[str, Any]]] = []
        skipped: list[tuple[int | None, str]] = list(skipped_cut)
        for index, line in enumerate(lines):
            number = None if truncated else index + 1
            if not line.strip():
                continue
            try:
                entries.append((number, parse_audit_line(line)))
            except AuditLineError as exc:
                skipped.append((number, str(exc)))
        if count is not None:
            entries = entries[-count:] if count > 0 else []
            first = entries[0][0] if entries else None
            if first is not None:
                skipped = [(n, why) for n, why in skipped if n is None or n > first]
            elif count == 0:
                skipped = []
        return AuditReading([e for _, e in entries], skipped, exists=True, truncated=truncated)

    def recent(self, count: int = 20) -> list[dict[str, Any]]:
        """The last ``count`` records (lines that are not records are skipped)."""
        return self.read(count).entries


def operator_fields() -> dict[str, str | None]:
    """Who and where, for every audit record (issue 15): ``operator`` (the local user name of the
    process), ``host`` (this host's name), ``terminal`` (the SSH terminal or the controlling tty),
    ``ssh_client`` (the client address from ``SSH_CONNECTION``, else ``SSH_CLIENT``; None when local)."""
    ssh = os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_CLIENT") or ""
    return {"operator": _user(), "host": socket.gethostname() or None,
            "terminal": os.environ.get("SSH_TTY") or _tty(), "ssh_client": ssh.split(" ")[0] or None}


def _user() -> str | None:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid with no passwd entry (containers)
        return os.environ.get("USER") or str(os.geteuid())


def _tty() -> str | None:
    try:
        return os.ttyname(0)
    except OSError:
        return None
