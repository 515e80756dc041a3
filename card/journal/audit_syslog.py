"""Audit records to the system log (issue 15; ``[audit] syslog = true``): each record, as written
to the audit file, also goes to the local syslog socket as an RFC 5424 message with the record's
fields as structured data, so rsyslog or journald forward it to the trust's collector — a copy an
edit of the local file cannot reach.

Message (RFC 5424 §6)::

    <PRI>1 TIMESTAMP HOSTNAME cardrenew PROCID MSGID [cardrenew@32473 outcome="renewed" slot="9A" …] MSG

PRI = facility × 8 + severity (failures ``warning``, successes ``notice``, facts ``info``); MSGID is
the outcome; the SD-ID ``cardrenew@32473`` uses the private enterprise number RFC 5612 reserves for
documentation (a deployment that needs its own says so to its collector); MSG is the record as JSON.
Never raises: a system log that cannot be reached is a warning, and the file record stands.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from pathlib import Path
from typing import Any

from card.journal.audit_lines import outcome_kind

logger = logging.getLogger("card.journal")

SD_ID = "cardrenew@32473"
APP_NAME = "cardrenew"
SEVERITY = {"failed": 4, "ok": 5, "note": 6}
"""Severity by :func:`outcome_kind` (RFC 5424 §6.2.1 Table 2: 4 warning, 5 notice, 6 informational)."""
MAX_MESSAGE_BYTES = 8000
"""A datagram larger than rsyslog's default 8 KiB would be cut: MSG is shortened to fit."""
SD_FIELDS = ("event", "outcome", "reference", "card_guid", "holder", "slot", "error_code", "tries_left",
             "operator", "host", "ssh_client", "terminal", "old_serial", "new_serial", "new_not_after",
             "written_late", "event_id")
"""The record's fields sent as structured data (all of them are in MSG)."""
_NAME_BAD = re.compile(r'[^!-~]|[= \]"]')
_HEADER_BAD = re.compile(r"[^!-~]")


def sd_value(value: object) -> str:
    """A PARAM-VALUE (RFC 5424 §6.3.3): ``"``, ``\\`` and ``]`` escaped with a backslash."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def header_token(text: object, limit: int) -> str:
    """A header field (HOSTNAME, MSGID …): printable US-ASCII without spaces, at most ``limit`` long; "-" when empty."""
    cleaned = _HEADER_BAD.sub("_", str(text or ""))[:limit]
    return cleaned or "-"


def rfc5424(record: dict[str, Any], facility: int) -> bytes:
    """The RFC 5424 message for one audit record (UTF-8 bytes, at most :data:`MAX_MESSAGE_BYTES`)."""
    severity = SEVERITY[outcome_kind(record.get("outcome"))]
    params = " ".join(f'{_NAME_BAD.sub("_", name)[:32]}="{sd_value(record[name])}"'
                      for name in SD_FIELDS if record.get(name) is not None)
    header = (f"<{facility * 8 + severity}>1 {header_token(record.get('time'), 64)} "
              f"{header_token(record.get('host') or socket.gethostname(), 255)} {APP_NAME} {os.getpid()} "
              f"{header_token(record.get('outcome') or record.get('event'), 32)} [{SD_ID}{' ' if params else ''}{params}] ")
    message = header.encode("utf-8")
    body = json.dumps(record, sort_keys=True).encode("utf-8")
    room = MAX_MESSAGE_BYTES - len(message)
    return message + (body if len(body) <= room else body[:max(room, 0)])


class SyslogForwarder:
    """Sends audit records to the local syslog socket (a Unix datagram socket, e.g. ``/dev/log``).

    Args:
        socket_path: the socket; facility: the RFC 5424 facility number (``authpriv`` is 10).
    """

    def __init__(self, socket_path: Path, facility: int) -> None:
        self.socket_path = Path(socket_path)
        self.facility = facility
        self.failures = 0

    def __call__(self, record: dict[str, Any]) -> None:
        """Send one record; a socket that is missing, refuses or is full is logged as a warning."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(1.0)  # a syslog daemon that stopped reading never holds a renewal
                sock.connect(str(self.socket_path))
                sock.send(rfc5424(record, self.facility))
        except OSError as exc:
            self.failures += 1
            logger.warning("audit record not sent to the system log at %s (%s); it is in the audit file",
                           self.socket_path, exc.strerror or exc)
