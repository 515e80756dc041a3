"""The issuer types by name: ``[issuer] type = "…"`` → how to make that issuer (DESIGN §4).

The one place the rest of the program asks for an issuer: :func:`make_issuer`. A new issuer is
its module plus one line in :data:`REGISTRY`.

Light on purpose: this module imports no cryptography (the TUI reads its configuration before its
first frame and makes the issuer after it, issue 7); each factory imports its issuer when called.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from card.config import ConfigError

if TYPE_CHECKING:
    from card.config import Settings
    from card.enrollment.base import Issuer


@dataclass(frozen=True)
class IssuerType:
    """One kind of issuer: its ``type`` name and its factory
    ``make(settings, window_days, cancel) -> Issuer`` (raises ConfigError, IssuerUnavailable)."""

    name: str
    make: Callable[[Settings, int, threading.Event | None], Issuer]


def _make_local(settings: Settings, window_days: int, cancel: threading.Event | None) -> Issuer:
    from card.enrollment.local import LocalCA

    if settings.issuer_directory is None:
        raise ConfigError("issuer.directory is needed for issuer.type = \"local\" (a directory made by `cardrenew ca init`)")
    if not (Path(settings.issuer_directory) / "ca.pem").is_file():
        raise ConfigError(f"issuer.directory {settings.issuer_directory} holds no CA (ca.pem); "
                          "make one with `cardrenew ca init DIR`")
    return LocalCA(Path(settings.issuer_directory), window_days)


def _make_scep(settings: Settings, window_days: int, cancel: threading.Event | None) -> Issuer:
    from card.enrollment.scep import ScepIssuer, ScepSettings

    if not settings.issuer_url:
        raise ConfigError("issuer.url is needed for issuer.type = \"scep\"")
    if not settings.ca_fingerprint:
        raise ConfigError("issuer.ca_fingerprint is needed for issuer.type = \"scep\" (GetCACert is unauthenticated)")
    return ScepIssuer(ScepSettings(settings.issuer_url, settings.ca_fingerprint, settings.challenge,
                                   settings.challenge_command, settings.allow_legacy_algorithms,
                                   settings.issuer_timeout_s, settings.poll_schedule_s,
                                   settings.message_type, settings.issuer_max_response_bytes),
                      window_days, cancel=cancel)


REGISTRY: dict[str, IssuerType] = {kind.name: kind for kind in (
    IssuerType("local", _make_local),
    IssuerType("scep", _make_scep),
)}
"""The issuer types by their ``type`` name, in the order the documentation lists them."""


def make_issuer(settings: Settings, window_days: int | None = None, cancel: threading.Event | None = None) -> Issuer:
    """The issuer the configuration names (``[issuer] type``), made now.

    Args:
        window_days: the renewal window (days) the issuer checks; None: ``settings.window_days``.
        cancel: when set, ends the issuer's waits (SCEP: HTTP replies, the RA hook, the PENDING
            poll) with OperationCancelled.

    Raises:
        ConfigError: an unknown type, or a setting the type needs is missing or wrong.
        IssuerUnavailable: the issuer cannot be opened.
    """
    kind = REGISTRY.get(settings.issuer_type)
    if kind is None:
        raise ConfigError(f"issuer.type {settings.issuer_type!r} is not available in this version")
    return kind.make(settings, window_days or settings.window_days, cancel)
