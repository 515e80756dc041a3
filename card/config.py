"""Configuration (DESIGN §8): TOML from ``--config``, ``$CARDRENEW_CONFIG``,
``$XDG_CONFIG_HOME/cardrenew/config.toml`` or ``/etc/cardrenew/config.toml``, in that order."""

from __future__ import annotations

import os
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from card.errors import CardError
from card.piv import DEFAULT_MANAGEMENT_KEY, KeyType, ManagementKeyAlgorithm, Slot


class ConfigError(CardError):
    """The configuration file is missing, unreadable or holds a wrong value."""

    title = "Configuration error"
    code = "CONFIG"
    next_step = "Fix the configuration file named in the message, or ask your administrator."


class UsageError(ConfigError):
    """The command was called wrongly (no PIN on standard input, confirmation needed)."""

    title = "Usage error"
    code = "USAGE"
    next_step = "See cardrenew --help."


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
    challenge: str | None = field(default=None, repr=False)
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

    def management_key(self) -> bytes:
        """The management key bytes of the ``default`` or ``file`` source. Never logged.

        (``pin-protected`` and ``diversified`` need the card: :mod:`card.mgmtkey`.)

        Raises:
            ConfigError: the source is unknown, not implemented, or its file is unreadable.
        """
        if self.management_key_source == "default":
            return DEFAULT_MANAGEMENT_KEY
        if self.management_key_source == "file":
            if self.management_key_file is None:
                raise ConfigError("management_key.source = \"file\" needs management_key.file")
            try:
                text = self.management_key_file.read_text().strip().replace(":", "").replace(" ", "")
                key = bytes.fromhex(text)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read the management key file {self.management_key_file}: {exc.__class__.__name__}") from exc
            if len(key) != self.management_key_algorithm.key_bytes:
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


def find_config(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The configuration file to read, or None for built-in defaults.

    Raises:
        ConfigError: an explicitly named file does not exist.
    """
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"configuration file not found: {path}")
        return path
    env = os.environ.get("CARDRENEW_CONFIG")
    if env:
        return find_config(env)
    for candidate in (Path(platformdirs.user_config_dir("cardrenew")) / "config.toml", Path("/etc/cardrenew/config.toml")):
        if candidate.is_file():
            return candidate
    return None


def _get(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        names = {int: "a whole number", str: "a string", list: "a list", bool: "true or false"}
        raise ConfigError(f"{where}.{key} must be {names.get(kind, kind.__name__)}")
    return value


def load_settings(explicit: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the configuration (see :func:`find_config`) into :class:`Settings`.

    Raises:
        ConfigError: unreadable TOML or a wrong value (the message names the key).
    """
    path = find_config(explicit)
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        for table in ("renewal", "issuer", "management_key", "ui", "card"):
            if table in raw and not isinstance(raw[table], dict):
                raise ConfigError(f"{path}: [{table}] must be a table")
    values: dict[str, Any] = {"source": path}
    renewal = raw.get("renewal", {})
    if (days := _get(renewal, "window_days", int, "renewal")) is not None:
        if not 1 <= days <= 3650:
            raise ConfigError("renewal.window_days must be between 1 and 3650")
        values["window_days"] = days
    if (slots := _get(renewal, "slots", list, "renewal")) is not None:
        parsed = []
        for entry in slots:
            try:
                slot = Slot.parse(str(entry["slot"]))  # entry must be a table: { slot = "9A", label = "…" }
            except (KeyError, ValueError, TypeError) as exc:
                raise ConfigError(f"renewal.slots: bad slot entry {entry!r}") from exc
            parsed.append(SlotSetting(slot, str(entry.get("label", slot.name.replace("_", " ").title()))))
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
        values["issuer_url"] = url
    if (challenge := _get(issuer, "challenge", str, "issuer")) is not None:
        values["challenge"] = challenge
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
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ConfigError("issuer.timeout_s must be a positive number of seconds")
        values["issuer_timeout_s"] = float(timeout)
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
        values["max_certificate_bytes"] = limit
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
