"""The ``[audit]`` table (issue 15; DESIGN §8): where each audit record goes besides the 0600 file.

```toml
[audit]
syslog = true                  # also send each record to the system log (RFC 5424, structured data)
syslog_socket = "/dev/log"     # the local syslog socket (rsyslog's imuxsock, journald's /dev/log)
syslog_facility = "authpriv"   # authpriv (default: security records), auth, user, local0 … local7
```

A leaf module beside :mod:`card.config` (imports only the configuration's errors and checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from card.config_errors import ConfigError
from card.config_schema import get, suggest

AUDIT_KEYS: dict[str, tuple[type, ...]] = {"syslog": (bool,), "syslog_socket": (str,), "syslog_facility": (str,)}
"""The ``[audit]`` keys with their TOML types (merged into :data:`card.config.SCHEMA`)."""
FACILITIES: dict[str, int] = {"auth": 4, "authpriv": 10, "user": 1, **{f"local{n}": 16 + n for n in range(8)}}
"""Syslog facility names → numbers (RFC 5424 §6.2.1 Table 1)."""
DEFAULT_SYSLOG_SOCKET = Path("/dev/log")


@dataclass(frozen=True)
class AuditSettings:
    """Where audit records go besides the file: the system log when ``syslog`` is true."""

    syslog: bool = False
    syslog_socket: Path = DEFAULT_SYSLOG_SOCKET
    syslog_facility: str = "authpriv"

    @property
    def facility_code(self) -> int:
        return FACILITIES[self.syslog_facility]


def parse_audit(table: Mapping[str, Any], base: Path) -> AuditSettings:
    """The ``[audit]`` table (its keys and TOML types already checked).

    Args:
        base: the configuration file's directory (a relative ``syslog_socket`` is taken from there).

    Raises:
        ConfigError: an unknown facility, or an empty socket path.
    """
    values: dict[str, Any] = {}
    if (syslog := get(table, "syslog", bool, "audit")) is not None:
        values["syslog"] = syslog
    if (socket := get(table, "syslog_socket", str, "audit")) is not None:
        if not socket.strip() or "\0" in socket:
            raise ConfigError("audit.syslog_socket must be the path of the local syslog socket, e.g. \"/dev/log\"")
        values["syslog_socket"] = base / socket
    if (facility := get(table, "syslog_facility", str, "audit")) is not None:
        if facility not in FACILITIES:
            raise ConfigError(f"audit.syslog_facility must be one of {', '.join(FACILITIES)}, not {facility!r}"
                              + suggest(facility, list(FACILITIES)))
        values["syslog_facility"] = facility
    return AuditSettings(**values)
