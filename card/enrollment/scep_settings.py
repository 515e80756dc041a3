"""The SCEP client's settings (``[issuer] type = "scep"``, RFC 8894): where the CA is, how it is
trusted, how a request is authorised and how long to wait. A light module: the client (and
cryptography) is imported only when the issuer is made."""

from __future__ import annotations

import math
import string
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from card.config_errors import ConfigError
from card.config_schema import NUMBER, get
from card.enrollment.settings import read_ca_fingerprint
from card.secret import Secret

if TYPE_CHECKING:
    from card.enrollment.scep import ScepIssuer

SCEP_KEYS: dict[str, tuple[type, ...]] = {
    "url": (str,), "ca_fingerprint": (str,), "challenge": (str,), "challenge_command": (list,),
    "message_type": (str,), "allow_legacy_algorithms": (bool,), "timeout_s": NUMBER, "max_response_bytes": (int,),
    "poll_schedule_s": (list,), "challenge_dry_run": (bool,),
}
"""The ``[issuer]`` keys the SCEP client reads, with their TOML types."""
MESSAGE_TYPES = ("PKCSReq", "RenewalReq")
"""The request types (RFC 8894 §3.3.1) ``issuer.message_type`` may name."""
RA_HOOK_PLACEHOLDERS = frozenset({"slot", "transaction_id", "fingerprint", "serial"})
"""What ``issuer.challenge_command`` may name in braces (see :mod:`card.enrollment.scep_ra_hook`)."""
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""Largest reply accepted by default (bytes); the same as ``card.enrollment.http.DEFAULT_MAX_RESPONSE_BYTES``."""


@dataclass(frozen=True)
class ScepIssuerSettings:
    """Where the CA is and how to talk to it. ``challenge`` is a secret (never logged).

    ``url`` and ``ca_fingerprint`` may be None in a file that names the type before it names them
    (the README's example); making the issuer then fails with a ConfigError naming the key.
    """

    issuer_type: ClassVar[str] = "scep"
    url: str | None
    """The server's URL, http or https with a host, e.g. ``http://127.0.0.1:8080/scep``."""
    ca_fingerprint: str | None
    """SHA-256 of the CA certificate DER (lower-case hex): GetCACert is unauthenticated."""
    challenge: Secret | None = field(default=None, repr=False)
    """A static challenge password (never logged, never journalled)."""
    challenge_command: tuple[str, ...] | None = None
    """The RA hook, run while the old key exists; it gets a proof of possession on stdin and prints a
    one-time challenge. Placeholders: ``{slot}``, ``{transaction_id}``, ``{fingerprint}``, ``{serial}``."""
    allow_legacy_algorithms: bool = False
    """Accept a SHA-1-signed, DES-encrypted reply (scepserver 2.1.0 sends one)."""
    timeout_s: float = 15.0
    """Total deadline of one HTTP request or one run of the RA hook (seconds): connect, send and the
    whole reply, however slowly it arrives."""
    poll_schedule_s: tuple[float, ...] = (2.0, 5.0, 10.0)
    """Waits between CertPolls of a PENDING request (seconds); then IssuancePending."""
    message_type: str = "PKCSReq"
    """``PKCSReq`` (signed by the new key under a self-signed transport certificate) or
    ``RenewalReq`` (signed by another slot's CA-issued certificate, see
    :meth:`ScepIssuer.request_signer_slot`)."""
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    """Largest HTTP reply accepted (bytes); a longer one is refused unread."""
    challenge_dry_run: bool = False
    """The RA hook honours ``"dry_run": true`` (``renew --check``): it then checks the proof and says
    whether it would grant, but hands out and records no challenge (see
    :func:`card.enrollment.scep_ra_hook.ask_ra`). False: the dry run never runs the hook."""


def parse_scep_table(table: Mapping[str, Any], base: Path) -> ScepIssuerSettings:
    """The SCEP keys of ``[issuer]`` (``base``, the file's directory, is not needed).

    Raises:
        ConfigError: a wrong value, naming the key: a URL that is not http(s) with a host, a bad
            RA hook, both ``challenge`` and ``challenge_command``, a timeout that is not a finite
            number of seconds in (0, 3600], a size cap outside 1 KiB … 256 MiB, a bad poll schedule.
    """
    if (url := get(table, "url", str, "issuer")) is not None:
        url = _issuer_url(url)
    challenge = get(table, "challenge", str, "issuer")
    command = get(table, "challenge_command", list, "issuer")
    if command is not None:
        _check_challenge_command(command)
        if challenge is not None:
            raise ConfigError("issuer: set either challenge or challenge_command, not both")
    if (mtype := get(table, "message_type", str, "issuer")) is not None and mtype not in MESSAGE_TYPES:
        raise ConfigError(f"issuer.message_type {mtype!r}: use \"PKCSReq\" or \"RenewalReq\"")
    legacy = get(table, "allow_legacy_algorithms", bool, "issuer")
    if (timeout := table.get("timeout_s")) is not None:
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not math.isfinite(timeout) \
                or not 0 < timeout <= 3600:
            raise ConfigError(f"issuer.timeout_s must be a number of seconds above 0 and at most 3600, not {timeout!r}")
    if (cap := get(table, "max_response_bytes", int, "issuer")) is not None and not 1024 <= cap <= 256 * 1024 * 1024:
        raise ConfigError("issuer.max_response_bytes must be between 1024 and 268435456 (256 MiB)")
    if (schedule := get(table, "poll_schedule_s", list, "issuer")) is not None:
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 3600 for x in schedule):
            raise ConfigError("issuer.poll_schedule_s must be a list of seconds, e.g. [2, 5, 10]")
    defaults = ScepIssuerSettings(None, None)
    return ScepIssuerSettings(
        url, read_ca_fingerprint(table),
        Secret(challenge) if challenge is not None else None, tuple(command) if command is not None else None,
        legacy if legacy is not None else defaults.allow_legacy_algorithms,
        float(timeout) if timeout is not None else defaults.timeout_s,
        tuple(float(x) for x in schedule) if schedule is not None else defaults.poll_schedule_s,
        mtype if mtype is not None else defaults.message_type,
        cap if cap is not None else defaults.max_response_bytes,
        bool(get(table, "challenge_dry_run", bool, "issuer")))


def _issuer_url(url: str) -> str:
    """``issuer.url`` if it is an http or https URL with a host (and a valid port), else ConfigError."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    except ValueError as exc:
        raise ConfigError(f"issuer.url {url!r} is not a valid URL ({exc}); use http://HOST/PATH or https://HOST/PATH") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"issuer.url {url!r}: only http:// or https:// URLs with a host name are allowed "
                          "(e.g. https://ca.example.org/scep)")
    return url


def _check_challenge_command(command: list[Any]) -> None:
    """``issuer.challenge_command``: a non-empty list of strings whose braces name only
    :data:`RA_HOOK_PLACEHOLDERS`, without format specs or conversions. Raises ConfigError."""
    if not command or not all(isinstance(part, str) for part in command):
        raise ConfigError("issuer.challenge_command must be a list of strings, e.g. [\"ra-hook\", \"--slot\", \"{slot}\"]")
    for part in command:
        try:
            parsed = list(string.Formatter().parse(part))
        except ValueError as exc:
            raise ConfigError(f"issuer.challenge_command {part!r}: {exc}") from exc
        names = {name for _, name, _, _ in parsed if name is not None}
        if any(spec or conversion for _, name, spec, conversion in parsed if name is not None):
            raise ConfigError(f"issuer.challenge_command {part!r}: placeholders take no format or conversion "
                              "(write {slot}, not {slot:…} or {slot!r}); a literal brace is {{ or }}")
        if unknown := names - RA_HOOK_PLACEHOLDERS:
            raise ConfigError(f"issuer.challenge_command {part!r}: unknown placeholder "
                              f"{{{sorted(unknown)[0]}}}; use {', '.join('{' + n + '}' for n in sorted(RA_HOOK_PLACEHOLDERS))}")


def make_scep_issuer(settings: ScepIssuerSettings, window_days: int, cancel: threading.Event | None) -> ScepIssuer:
    """The SCEP client for ``settings``; ``cancel``, when set, ends its waits (HTTP replies, the RA
    hook, the PENDING poll) with OperationCancelled.

    Raises:
        ConfigError: ``issuer.url`` or ``issuer.ca_fingerprint`` is not configured.
    """
    from card.enrollment.scep import ScepIssuer  # cryptography: only when the issuer is made (issue 7)

    if not settings.url:
        raise ConfigError("issuer.url is needed for issuer.type = \"scep\"")
    if not settings.ca_fingerprint:
        raise ConfigError("issuer.ca_fingerprint is needed for issuer.type = \"scep\" (GetCACert is unauthenticated)")
    return ScepIssuer(settings, window_days, cancel=cancel)
