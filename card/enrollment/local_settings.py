"""The embedded CA's settings (``[issuer] type = "local"``): the CA's directory and, optionally, the
pinned fingerprint of its certificate. A light module: :class:`~card.enrollment.local.LocalCA`
(and cryptography) is imported only when the issuer is made."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from card.config_errors import ConfigError
from card.config_schema import get
from card.enrollment.settings import read_ca_fingerprint

if TYPE_CHECKING:
    from card.enrollment.local import LocalCA

LOCAL_KEYS: dict[str, tuple[type, ...]] = {"directory": (str,), "ca_fingerprint": (str,)}
"""The ``[issuer]`` keys the embedded CA reads, with their TOML types."""


@dataclass(frozen=True)
class LocalIssuerSettings:
    """``[issuer] type = "local"``. ``directory`` is absolute (made by ``cardrenew ca init``); None:
    not configured (an error when the issuer is made, not when the file is read)."""

    issuer_type: ClassVar[str] = "local"
    directory: Path | None = None
    ca_fingerprint: str | None = None
    """SHA-256 of the CA certificate DER (lower-case hex); checked at preflight."""


def parse_local_table(table: Mapping[str, Any], base: Path) -> LocalIssuerSettings:
    """The embedded CA's keys of ``[issuer]``; a relative ``directory`` is relative to ``base`` (the
    configuration file's directory).

    Raises:
        ConfigError: a key of the wrong type.
    """
    directory = get(table, "directory", str, "issuer")
    return LocalIssuerSettings((base / directory).resolve() if directory is not None else None,
                               read_ca_fingerprint(table))


def make_local_ca(settings: LocalIssuerSettings, window_days: int, cancel: threading.Event | None) -> LocalCA:
    """The embedded CA in ``settings.directory``, renewing ``window_days`` before expiry; ``cancel``
    is its cancellation token (it never waits).

    Raises:
        ConfigError: no directory configured, or it holds no CA (``ca.pem``).
        IssuerUnavailable: the CA's files cannot be read.
    """
    from card.enrollment.local import LocalCA  # cryptography: only when the issuer is made (issue 7)

    if settings.directory is None:
        raise ConfigError("issuer.directory is needed for issuer.type = \"local\" (a directory made by `cardrenew ca init`)")
    if not (settings.directory / "ca.pem").is_file():
        raise ConfigError(f"issuer.directory {settings.directory} holds no CA (ca.pem); "
                          "make one with `cardrenew ca init DIR`")
    return LocalCA(settings.directory, window_days, cancel=cancel)
