"""Configuration (DESIGN §8): TOML from ``--config``, ``$CARDRENEW_CONFIG``,
``$XDG_CONFIG_HOME/cardrenew/config.toml`` or ``/etc/cardrenew/config.toml``, in that order."""

from __future__ import annotations

import difflib
import math
import os
import string
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from card.config_errors import ConfigError, UsageError
from card.config_files import (
    MAX_CONFIG_BYTES,
    MAX_KEY_FILE_BYTES,
    find_config,
    read_hex_key_file,
    read_small_regular_file,
    read_toml,
)
from card.piv import DEFAULT_MANAGEMENT_KEY, KeyType, ManagementKeyAlgorithm, Slot
from card.secret import Secret


MANAGEMENT_KEY_SOURCES = ("default", "pin-protected", "file", "diversified")
RA_HOOK_PLACEHOLDERS = frozenset({"slot", "transaction_id", "fingerprint", "serial"})
"""What ``issuer.challenge_command`` may name in braces (see ``ScepIssuer._ask_ra``)."""

DEFAULT_SLOTS = ((Slot.AUTHENTICATION, "PIV Authentication"), (Slot.SIGNATURE, "Digital Signature"))
DEFAULT_RA_CONTACT = "your local Registration Authority (RA)"


@dataclass(frozen=True)
class SlotSetting:
    """One certificate the tool renews: the PIV slot and the label people know it by."""

    slot: Slot
    label: str


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Paths are absolute; durations in days."""

    window_days: int = 90
    slots: tuple[SlotSetting, ...] = tuple(SlotSetting(s, label) for s, label in DEFAULT_SLOTS)
    key_type: KeyType | None = None
    """Key type of new keys; None keeps each slot's current type."""
    issuer_type: str = "local"
    issuer_directory: Path | None = None
    ca_fingerprint: str | None = None
    """SHA-256 of the CA certificate DER (hex, colons allowed); checked at preflight."""
    issuer_url: str | None = None
    """SCEP: the server's URL, e.g. ``http://127.0.0.1:8080/scep``."""
    challenge: Secret | None = field(default=None, repr=False)
    """SCEP challenge password (a secret: never logged, never journalled)."""
    challenge_command: tuple[str, ...] | None = None
    """SCEP: the RA hook, run while the old key exists; it gets a proof of possession on stdin and
    prints a one-time challenge. Placeholders: ``{slot}``, ``{transaction_id}``, ``{fingerprint}``,
    ``{serial}``."""
    allow_legacy_algorithms: bool = False
    message_type: str = "PKCSReq"
    """SCEP request type (RFC 8894 §3.3.1): ``PKCSReq`` (signed by the new key under a self-signed
    transport certificate) or ``RenewalReq`` (signed by the card's other slot's certificate and key,
    which the CA issued: 9C signs for 9A, 9A for the rest)."""
    """SCEP: accept a SHA-1-signed, DES-encrypted reply (scepserver 2.1.0 sends one)."""
    issuer_timeout_s: float = 15.0
    """Total deadline of one request to the CA or RA hook (seconds): connect, send and the whole
    reply, however slowly it arrives."""
    issuer_max_response_bytes: int = 4 * 1024 * 1024
    """Largest reply accepted from the CA (bytes); a longer one is refused unread."""
    poll_schedule_s: tuple[float, ...] = (2.0, 5.0, 10.0)
    """SCEP: waits between polls of a PENDING request (seconds); then the error path."""
    management_key_source: str = "default"
    management_key_algorithm: ManagementKeyAlgorithm = ManagementKeyAlgorithm.TDES
    management_key_file: Path | None = None
    management_key_sources: tuple[str, ...] = ()
    """Sources tried in order (DESIGN §5); empty means just ``management_key_source``."""
    master_key_file: Path | None = None
    """For the ``diversified`` source: the deployment master key (hex), diversified by card GUID."""
    max_certificate_bytes: int = 3052
    removal_policy: str = "logoff"
    ra_contact: str = DEFAULT_RA_CONTACT
    allow_unlock: bool = False
    """The Card tab offers *Unlock card* (PUK → new PIN); for support staff's hosts."""
    inactivity_timeout_s: int = 300
    """The TUI logs off after this many seconds without a key press or click; 0 = never."""
    kiosk: bool = False
    """Kiosk mode: no quit key, no command palette, back to the logon pane after log off."""
    theme: str = "default"
    """The TUI's colours: ``default`` or ``high-contrast``."""
    pin_characters: str = string.digits
    """What the TUI's PIN and PUK fields accept (``ui.pin_characters``): PIV PINs are digits
    (SP 800-73-4 Part 2 §2.4.3); cards that take letters may list more. Printable, no spaces."""
    reader: str | None = None
    state_dir: Path = field(default_factory=lambda: Path(platformdirs.user_state_dir("cardrenew")))
    source: Path | None = None
    """The file these settings came from (None: built-in defaults)."""

    def management_key(self) -> Secret:
        """The management key of the ``default`` or ``file`` source, as a new Secret (the caller
        wipes it after GENERAL AUTHENTICATE). Never logged.

        (``pin-protected`` and ``diversified`` need the card: :mod:`card.mgmtkey`.)

        Raises:
            ConfigError: the source is unknown, not implemented, or its file is unreadable.
        """
        if self.management_key_source == "default":
            return Secret(DEFAULT_MANAGEMENT_KEY)
        if self.management_key_source == "file":
            if self.management_key_file is None:
                raise ConfigError("management_key.source = \"file\" needs management_key.file")
            key = read_hex_key_file(self.management_key_file, "management key file")
            if len(key) != self.management_key_algorithm.key_bytes:
                key.wipe()
                raise ConfigError(f"the management key file must hold {self.management_key_algorithm.key_bytes} bytes")
            return key
        raise ConfigError(f"management_key.source = {self.management_key_source!r} needs the card: "
                          "use card.mgmtkey.authenticate_with_configured_key")

    @property
    def sources(self) -> tuple[str, ...]:
        """The management-key sources to try, in order."""
        return self.management_key_sources or (self.management_key_source,)

    @property
    def uses_default_management_key(self) -> bool:
        return "default" in self.sources


_NUMBER = (int, float)
SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "": {"reader": (str,)},
    "renewal": {"window_days": (int,), "slots": (list,), "key_type": (str,)},
    "issuer": {"type": (str,), "directory": (str,), "ca_fingerprint": (str,), "url": (str,), "challenge": (str,),
               "challenge_command": (list,), "message_type": (str,), "allow_legacy_algorithms": (bool,),
               "timeout_s": _NUMBER, "max_response_bytes": (int,), "poll_schedule_s": (list,)},
    "management_key": {"source": (str, list), "algorithm": (str,), "file": (str,), "master_key_file": (str,)},
    "ui": {"removal_policy": (str,), "ra_contact": (str,), "allow_unlock": (bool,), "inactivity_timeout_s": (int,),
           "kiosk": (bool,), "theme": (str,), "pin_characters": (str,)},
    "card": {"max_certificate_bytes": (int,)},
}
"""Every key the configuration may hold, by table ("" = top level), with the TOML types it takes.
A key that is not here is an error naming the file and the key (a misspelt key must never be
silently ignored). A new setting is added here and read in :func:`load_settings`."""
SLOT_ENTRY: dict[str, tuple[type, ...]] = {"slot": (str,), "label": (str,)}
"""The keys of one ``renewal.slots`` entry, e.g. ``{ slot = "9A", label = "PIV Authentication" }``."""

_TYPE_WORDS = {int: "a whole number", float: "a number", str: "a string", list: "a list", bool: "true or false",
               dict: "a table"}


def _type_words(kinds: tuple[type, ...]) -> str:
    if kinds == _NUMBER:
        return "a number"
    return " or ".join(_TYPE_WORDS.get(kind, kind.__name__) for kind in kinds)


def _value_words(value: object) -> str:
    """What a TOML value is, in words (for "must be X, not Y")."""
    for kind in (bool, int, float, str, list, dict):
        if isinstance(value, kind):
            return _TYPE_WORDS[kind]
    return "a date or time"


def _suggest(name: str, known: list[str]) -> str:
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _check_schema(raw: dict[str, Any]) -> None:
    """Refuse unknown tables and keys, and values of the wrong TOML type, naming the key.

    Raises:
        ConfigError: the first problem found (the caller adds the file name).
    """
    tables = [t for t in SCHEMA if t]
    for name, value in raw.items():
        if name in SCHEMA[""]:
            table, items = "", {name: value}
        elif name in SCHEMA:
            if not isinstance(value, dict):
                raise ConfigError(f"[{name}] must be a table")
            table, items = name, value
        else:
            raise ConfigError(f"unknown key '{name}'" + _suggest(name, tables + list(SCHEMA[""])))
        for key, item in items.items():
            where = f"{table}.{key}" if table else key
            kinds = SCHEMA[table].get(key)
            if kinds is None:
                raise ConfigError(f"unknown key '{where}'" + _suggest(key, list(SCHEMA[table])))
            if not isinstance(item, kinds) or (isinstance(item, bool) and bool not in kinds):
                raise ConfigError(f"{where} must be {_type_words(kinds)}, not {_value_words(item)}")
    for n, entry in enumerate(raw.get("renewal", {}).get("slots", [])):
        where = f"renewal.slots[{n}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table like {{ slot = \"9A\", label = \"PIV Authentication\" }}, "
                              f"not {_value_words(entry)}")
        for key, item in entry.items():
            if key not in SLOT_ENTRY:
                raise ConfigError(f"unknown key '{where}.{key}'" + _suggest(key, list(SLOT_ENTRY)))
            if not isinstance(item, SLOT_ENTRY[key]):
                raise ConfigError(f"{where}.{key} must be {_type_words(SLOT_ENTRY[key])}, not {_value_words(item)}")


def _get(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        names = {int: "a whole number", str: "a string", list: "a list", bool: "true or false"}
        raise ConfigError(f"{where}.{key} must be {names.get(kind, kind.__name__)}")
    return value


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


def load_settings(explicit: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the configuration (see :func:`find_config`) into :class:`Settings`.

    Strict: an unknown table or key (in any table, also in ``renewal.slots`` entries), a value of
    the wrong type or out of range is an error; every message starts with the file's path.

    Raises:
        ConfigError: a missing file named with ``--config``, unreadable or not TOML, nested too
            deeply, an unknown key ("unknown key 'issuer.urll' (did you mean 'url'?)"), a wrong value.
    """
    path = find_config(explicit)
    raw: dict[str, Any] = read_toml(path) if path is not None else {}
    try:
        _check_schema(raw)
        return _settings_from(raw, path, overrides)
    except ConfigError as exc:
        if path is None:
            raise
        raise exc.naming(path) from exc


def _settings_from(raw: dict[str, Any], path: Path | None, overrides: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {"source": path}
    renewal = raw.get("renewal", {})
    if (days := _get(renewal, "window_days", int, "renewal")) is not None:
        if not 1 <= days <= 3650:
            raise ConfigError("renewal.window_days must be between 1 and 3650")
        values["window_days"] = days
    if (slots := _get(renewal, "slots", list, "renewal")) is not None:
        parsed = []
        for n, entry in enumerate(slots):  # each a table { slot = "9A", label = "…" } (checked by _check_schema)
            if "slot" not in entry:
                raise ConfigError(f"renewal.slots[{n}] needs slot = \"9A\", \"9C\", \"9D\" or \"9E\"")
            try:
                slot = Slot.parse(entry["slot"])
            except ValueError as exc:
                raise ConfigError(f"renewal.slots[{n}].slot {entry['slot']!r}: use \"9A\", \"9C\", \"9D\" or \"9E\"") from exc
            if any(s.slot is slot for s in parsed):
                raise ConfigError(f"renewal.slots names slot {slot.hex} twice")
            parsed.append(SlotSetting(slot, entry.get("label", slot.name.replace("_", " ").title())))
        if not parsed:
            raise ConfigError("renewal.slots is empty")
        values["slots"] = tuple(parsed)
    if (kt := _get(renewal, "key_type", str, "renewal")) is not None and kt != "same":
        try:
            values["key_type"] = KeyType[kt.upper()]
        except KeyError as exc:
            raise ConfigError(f"renewal.key_type {kt!r}: use RSA2048, ECCP256, ECCP384 or same") from exc
    issuer = raw.get("issuer", {})
    if (itype := _get(issuer, "type", str, "issuer")) is not None:
        if itype not in ("local", "scep"):
            raise ConfigError(f"issuer.type {itype!r}: use \"local\" or \"scep\"")
        values["issuer_type"] = itype
    if (directory := _get(issuer, "directory", str, "issuer")) is not None:
        base = path.parent if path else Path.cwd()
        values["issuer_directory"] = (base / directory).resolve()
    if (fp := _get(issuer, "ca_fingerprint", str, "issuer")) is not None:
        values["ca_fingerprint"] = fp.replace(":", "").replace(" ", "").lower()
    if (url := _get(issuer, "url", str, "issuer")) is not None:
        values["issuer_url"] = _issuer_url(url)
    if (challenge := _get(issuer, "challenge", str, "issuer")) is not None:
        values["challenge"] = Secret(challenge)
    if (command := _get(issuer, "challenge_command", list, "issuer")) is not None:
        if not command or not all(isinstance(part, str) for part in command):
            raise ConfigError("issuer.challenge_command must be a list of strings, e.g. [\"ra-hook\", \"--slot\", \"{slot}\"]")
        for part in command:
            try:
                parsed = list(string.Formatter().parse(part))
            except ValueError as exc:
                raise ConfigError(f"issuer.challenge_command {part!r}: {exc}") from exc
            names = {field for _, field, _, _ in parsed if field is not None}
            if any(spec or conversion for _, field, spec, conversion in parsed if field is not None):
                raise ConfigError(f"issuer.challenge_command {part!r}: placeholders take no format or conversion "
                                  "(write {slot}, not {slot:…} or {slot!r}); a literal brace is {{ or }}")
            if unknown := names - RA_HOOK_PLACEHOLDERS:
                raise ConfigError(f"issuer.challenge_command {part!r}: unknown placeholder "
                                  f"{{{sorted(unknown)[0]}}}; use {', '.join('{' + n + '}' for n in sorted(RA_HOOK_PLACEHOLDERS))}")
        if challenge is not None:
            raise ConfigError("issuer: set either challenge or challenge_command, not both")
        values["challenge_command"] = tuple(command)
    if (mtype := _get(issuer, "message_type", str, "issuer")) is not None:
        if mtype not in ("PKCSReq", "RenewalReq"):
            raise ConfigError(f"issuer.message_type {mtype!r}: use \"PKCSReq\" or \"RenewalReq\"")
        values["message_type"] = mtype
    if (legacy := _get(issuer, "allow_legacy_algorithms", bool, "issuer")) is not None:
        values["allow_legacy_algorithms"] = legacy
    if (timeout := issuer.get("timeout_s")) is not None:
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not math.isfinite(timeout) \
                or not 0 < timeout <= 3600:
            raise ConfigError(f"issuer.timeout_s must be a number of seconds above 0 and at most 3600, not {timeout!r}")
        values["issuer_timeout_s"] = float(timeout)
    if (cap := _get(issuer, "max_response_bytes", int, "issuer")) is not None:
        if not 1024 <= cap <= 256 * 1024 * 1024:
            raise ConfigError("issuer.max_response_bytes must be between 1024 and 268435456 (256 MiB)")
        values["issuer_max_response_bytes"] = cap
    if (schedule := _get(issuer, "poll_schedule_s", list, "issuer")) is not None:
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 3600 for x in schedule):
            raise ConfigError("issuer.poll_schedule_s must be a list of seconds, e.g. [2, 5, 10]")
        values["poll_schedule_s"] = tuple(float(x) for x in schedule)
    mk = raw.get("management_key", {})
    if (source := mk.get("source")) is not None:
        sources = [source] if isinstance(source, str) else source
        if not isinstance(sources, list) or not sources or not all(isinstance(x, str) for x in sources):
            raise ConfigError("management_key.source must be a string or a list of strings")
        for name in sources:
            if name not in MANAGEMENT_KEY_SOURCES:
                raise ConfigError(f"management_key.source {name!r} is not one of default, pin-protected, file, diversified")
        values["management_key_source"] = sources[0]
        values["management_key_sources"] = tuple(sources)
    if (master := _get(mk, "master_key_file", str, "management_key")) is not None:
        values["master_key_file"] = Path(master)
    if (alg := _get(mk, "algorithm", str, "management_key")) is not None:
        names = {"3DES": "TDES", "TDES": "TDES", "AES128": "AES128", "AES192": "AES192", "AES256": "AES256"}
        if alg.upper().replace("-", "") not in names:
            raise ConfigError(f"management_key.algorithm {alg!r}: use 3DES, AES128, AES192 or AES256")
        values["management_key_algorithm"] = ManagementKeyAlgorithm[names[alg.upper().replace("-", "")]]
    if (mkfile := _get(mk, "file", str, "management_key")) is not None:
        values["management_key_file"] = Path(mkfile)
    ui = raw.get("ui", {})
    if (policy := _get(ui, "removal_policy", str, "ui")) is not None:
        if policy not in ("logoff", "lock", "ignore"):
            raise ConfigError("ui.removal_policy must be logoff, lock or ignore")
        values["removal_policy"] = policy
    if (contact := _get(ui, "ra_contact", str, "ui")) is not None:
        values["ra_contact"] = contact
    if (allow := _get(ui, "allow_unlock", bool, "ui")) is not None:
        values["allow_unlock"] = allow
    if (idle := _get(ui, "inactivity_timeout_s", int, "ui")) is not None:
        if not 0 <= idle <= 86400:
            raise ConfigError("ui.inactivity_timeout_s must be between 0 (off) and 86400 seconds")
        values["inactivity_timeout_s"] = idle
    if (kiosk := _get(ui, "kiosk", bool, "ui")) is not None:
        values["kiosk"] = kiosk
    if (theme := _get(ui, "theme", str, "ui")) is not None:
        if theme not in ("default", "high-contrast"):
            raise ConfigError("ui.theme must be \"default\" or \"high-contrast\"")
        values["theme"] = theme
    if (chars := _get(ui, "pin_characters", str, "ui")) is not None:
        if not chars or any(not c.isprintable() or c.isspace() for c in chars):
            raise ConfigError("ui.pin_characters must list the characters a PIN may contain "
                              "(printable, no spaces), e.g. \"0123456789\"")
        values["pin_characters"] = "".join(sorted(set(chars)))
    if (limit := _get(raw.get("card", {}), "max_certificate_bytes", int, "card")) is not None:
        if not 256 <= limit <= 65535:
            raise ConfigError("card.max_certificate_bytes must be between 256 and 65535")
        values["max_certificate_bytes"] = limit
    if (reader := _get(raw, "reader", str, "")) is not None:
        values["reader"] = reader
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
