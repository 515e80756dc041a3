"""Configuration (DESIGN §8): TOML from ``--config``, ``$CARDRENEW_CONFIG``,
``$XDG_CONFIG_HOME/cardrenew/config.toml`` or ``/etc/cardrenew/config.toml``, in that order."""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
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
from card.config_audit import AUDIT_KEYS, AuditSettings, parse_audit
from card.config_schema import check_schema, get
from card.config_token import TOKEN_KEYS, KeySelector, TokenSettings, parse_token
from card.enrollment import registry
from card.enrollment.local_settings import LocalIssuerSettings
from card.enrollment.settings import IssuerSettings
from card.piv import DEFAULT_MANAGEMENT_KEY, KeyType, ManagementKeyAlgorithm, Slot
from card.secret import Secret

__all__ = [
    "DEFAULT_RA_CONTACT", "DEFAULT_SLOTS", "MANAGEMENT_KEY_SOURCES", "MAX_CONFIG_BYTES", "MAX_KEY_FILE_BYTES", "SCHEMA",
    "SLOT_ENTRY", "AuditSettings", "ConfigError", "KeySelector", "Settings", "SlotSetting", "TokenSettings", "UsageError", "find_config", "load_settings",
    "read_hex_key_file", "read_small_regular_file",
]
"""The configuration's public names; the errors and the file readers live in :mod:`card.config_errors`
and :mod:`card.config_files` and are re-exported here for the callers of the configuration."""

MANAGEMENT_KEY_SOURCES = ("default", "pin-protected", "file", "diversified")

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
    issuer: IssuerSettings = field(default_factory=LocalIssuerSettings)
    """The ``[issuer]`` table, parsed by its type's own parser (:mod:`card.enrollment.registry`):
    a :class:`~card.enrollment.local_settings.LocalIssuerSettings`, a
    :class:`~card.enrollment.scep_settings.ScepIssuerSettings`, …"""
    management_key_source: str = "default"
    management_key_algorithm: ManagementKeyAlgorithm = ManagementKeyAlgorithm.TDES
    management_key_file: Path | None = None
    management_key_sources: tuple[str, ...] = ()
    """Sources tried in order (DESIGN §5); empty means just ``management_key_source``."""
    master_key_file: Path | None = None
    """For the ``diversified`` source: the deployment master key (hex), diversified by card GUID."""
    max_certificate_bytes: int = 3052
    token: TokenSettings = field(default_factory=TokenSettings)
    """The ``[card]`` table's interface (``piv`` | ``pkcs11``), PKCS#11 module and token, ``old_keys``
    and the keys to renew (:mod:`card.config_token`)."""
    audit: AuditSettings = field(default_factory=AuditSettings)
    """The ``[audit]`` table: the system log besides the audit file (:mod:`card.config_audit`)."""
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


SCHEMA: dict[str, Mapping[str, tuple[type, ...]]] = {
    "": {"reader": (str,)},
    "renewal": {"window_days": (int,), "slots": (list,), "key_type": (str,)},
    "issuer": registry.TABLE_KEYS,
    "management_key": {"source": (str, list), "algorithm": (str,), "file": (str,), "master_key_file": (str,)},
    "ui": {"removal_policy": (str,), "ra_contact": (str,), "allow_unlock": (bool,), "inactivity_timeout_s": (int,),
           "kiosk": (bool,), "theme": (str,), "pin_characters": (str,)},
    "card": {"max_certificate_bytes": (int,), **TOKEN_KEYS},
    "audit": AUDIT_KEYS,
}
"""Every key the configuration may hold, by table ("" = top level), with the TOML types it takes.
A key that is not here is an error naming the file and the key (a misspelt key must never be
silently ignored). A new setting is added here and read in :func:`load_settings`; ``[issuer]``
holds ``type`` and the keys of every registered issuer type (:mod:`card.enrollment.registry`)."""
SLOT_ENTRY: dict[str, tuple[type, ...]] = {"slot": (str,), "label": (str,)}
"""The keys of one ``renewal.slots`` entry, e.g. ``{ slot = "9A", label = "PIV Authentication" }``."""


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
        check_schema(raw, SCHEMA, SLOT_ENTRY)
        return _settings_from(raw, path, overrides)
    except ConfigError as exc:
        if path is None:
            raise
        raise exc.naming(path) from exc


def _settings_from(raw: dict[str, Any], path: Path | None, overrides: dict[str, Any]) -> Settings:
    """The settings of a document whose keys and TOML types are checked; ``overrides`` (not None) win."""
    values: dict[str, Any] = {"source": path}
    values.update(_renewal(raw.get("renewal", {})))
    values["issuer"] = registry.parse_issuer_table(raw.get("issuer", {}), path.parent if path else Path.cwd())
    values.update(_management_key(raw.get("management_key", {})))
    values.update(_ui(raw.get("ui", {})))
    values["audit"] = parse_audit(raw.get("audit", {}), path.parent if path else Path.cwd())
    if (limit := get(raw.get("card", {}), "max_certificate_bytes", int, "card")) is not None:
        if not 256 <= limit <= 65535:
            raise ConfigError("card.max_certificate_bytes must be between 256 and 65535")
        values["max_certificate_bytes"] = limit
    values["token"] = parse_token(raw.get("card", {}), path.parent if path else Path.cwd(),
                                  has_slots="slots" in raw.get("renewal", {}))
    if (reader := get(raw, "reader", str, "")) is not None:
        values["reader"] = reader
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


def _renewal(renewal: dict[str, Any]) -> dict[str, Any]:
    """``[renewal]``: window_days, slots, key_type → Settings fields. Raises ConfigError."""
    values: dict[str, Any] = {}
    if (days := get(renewal, "window_days", int, "renewal")) is not None:
        if not 1 <= days <= 3650:
            raise ConfigError("renewal.window_days must be between 1 and 3650")
        values["window_days"] = days
    if (slots := get(renewal, "slots", list, "renewal")) is not None:
        parsed: list[SlotSetting] = []
        for n, entry in enumerate(slots):  # each a table { slot = "9A", label = "…" } (checked by check_schema)
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
    if (kt := get(renewal, "key_type", str, "renewal")) is not None and kt != "same":
        try:
            values["key_type"] = KeyType[kt.upper()]
        except KeyError as exc:
            raise ConfigError(f"renewal.key_type {kt!r}: use RSA2048, ECCP256, ECCP384 or same") from exc
    return values


def _management_key(mk: dict[str, Any]) -> dict[str, Any]:
    """``[management_key]``: source (one or a list), master_key_file, algorithm, file. Raises ConfigError."""
    values: dict[str, Any] = {}
    if (source := mk.get("source")) is not None:
        sources = [source] if isinstance(source, str) else source
        if not isinstance(sources, list) or not sources or not all(isinstance(x, str) for x in sources):
            raise ConfigError("management_key.source must be a string or a list of strings")
        for name in sources:
            if name not in MANAGEMENT_KEY_SOURCES:
                raise ConfigError(f"management_key.source {name!r} is not one of default, pin-protected, file, diversified")
        values["management_key_source"] = sources[0]
        values["management_key_sources"] = tuple(sources)
    if (master := get(mk, "master_key_file", str, "management_key")) is not None:
        values["master_key_file"] = Path(master)
    if (alg := get(mk, "algorithm", str, "management_key")) is not None:
        names = {"3DES": "TDES", "TDES": "TDES", "AES128": "AES128", "AES192": "AES192", "AES256": "AES256"}
        if alg.upper().replace("-", "") not in names:
            raise ConfigError(f"management_key.algorithm {alg!r}: use 3DES, AES128, AES192 or AES256")
        values["management_key_algorithm"] = ManagementKeyAlgorithm[names[alg.upper().replace("-", "")]]
    if (mkfile := get(mk, "file", str, "management_key")) is not None:
        values["management_key_file"] = Path(mkfile)
    return values


def _ui(ui: dict[str, Any]) -> dict[str, Any]:
    """``[ui]``: removal_policy, ra_contact, allow_unlock, inactivity_timeout_s, kiosk, theme,
    pin_characters. Raises ConfigError."""
    values: dict[str, Any] = {}
    if (policy := get(ui, "removal_policy", str, "ui")) is not None:
        if policy not in ("logoff", "lock", "ignore"):
            raise ConfigError("ui.removal_policy must be logoff, lock or ignore")
        values["removal_policy"] = policy
    if (contact := get(ui, "ra_contact", str, "ui")) is not None:
        values["ra_contact"] = contact
    if (allow := get(ui, "allow_unlock", bool, "ui")) is not None:
        values["allow_unlock"] = allow
    if (idle := get(ui, "inactivity_timeout_s", int, "ui")) is not None:
        if not 0 <= idle <= 86400:
            raise ConfigError("ui.inactivity_timeout_s must be between 0 (off) and 86400 seconds")
        values["inactivity_timeout_s"] = idle
    if (kiosk := get(ui, "kiosk", bool, "ui")) is not None:
        values["kiosk"] = kiosk
    if (theme := get(ui, "theme", str, "ui")) is not None:
        if theme not in ("default", "high-contrast"):
            raise ConfigError("ui.theme must be \"default\" or \"high-contrast\"")
        values["theme"] = theme
    if (chars := get(ui, "pin_characters", str, "ui")) is not None:
        if not chars or any(not c.isprintable() or c.isspace() for c in chars):
            raise ConfigError("ui.pin_characters must list the characters a PIN may contain "
                              "(printable, no spaces), e.g. \"0123456789\"")
        values["pin_characters"] = "".join(sorted(set(chars)))
    return values
