"""The ``[card]`` table's token keys (issue 14; DESIGN §8): which interface reaches the card or
token, the PKCS#11 module and token to use, what a side-by-side renewal does with the old key,
and which keys of a PKCS#11 token are renewed.

```toml
[card]
interface = "pkcs11"                       # "piv" (default: APDUs through PC/SC) | "pkcs11"
module = "/usr/lib/softhsm/libsofthsm2.so" # the token's PKCS#11 library (relative: to the config file)
token_label = "cardrenew"                  # optional: CK_TOKEN_INFO.label (≤ 32 bytes)
token_serial = "1a2b3c4d"                  # optional: CK_TOKEN_INFO.serialNumber (≤ 16 characters)
old_keys = "delete"                        # side by side: "delete" | "keep" (relabelled "… (superseded DATE)")
keys = [{ label = "Authentication" }, { id = "01" }]  # default: every certificate whose private key is on the token
```

A leaf module beside :mod:`card.config` (imports only the configuration's errors and checks): it
knows nothing of PKCS#11 itself; the assembly (:mod:`card.backend`) opens the module.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from card.config_errors import ConfigError
from card.config_schema import get, suggest, value_words

Interface = Literal["piv", "pkcs11"]
OldKeys = Literal["delete", "keep"]

INTERFACES: tuple[Interface, ...] = ("piv", "pkcs11")
OLD_KEYS: tuple[OldKeys, ...] = ("delete", "keep")

TOKEN_KEYS: dict[str, tuple[type, ...]] = {
    "interface": (str,), "module": (str,), "token_label": (str,), "token_serial": (str,),
    "old_keys": (str,), "keys": (list,),
}
"""The ``[card]`` keys read here, with their TOML types (merged into :data:`card.config.SCHEMA`)."""
KEY_ENTRY: dict[str, tuple[type, ...]] = {"label": (str,), "id": (str,)}
"""The keys of one ``card.keys`` entry: exactly one of them, ``{ label = "…" }`` or ``{ id = "01" }``."""

TOKEN_LABEL_BYTES = 32
"""CK_TOKEN_INFO.label is 32 bytes of UTF-8, padded with spaces (PKCS#11 v2.40 §3.2)."""
TOKEN_SERIAL_CHARS = 16
"""CK_TOKEN_INFO.serialNumber is 16 characters, padded with spaces (PKCS#11 v2.40 §3.2)."""
MAX_KEY_ID_BYTES = 255


@dataclass(frozen=True)
class KeySelector:
    """One key to renew on a PKCS#11 token, named by its certificate's CKA_LABEL or by CKA_ID.

    Exactly one of ``label`` and ``key_id`` is set.
    """

    label: str | None = None
    key_id: bytes | None = None

    def matches(self, label: str, key_id: bytes) -> bool:
        """Whether a certificate with CKA_LABEL ``label`` and CKA_ID ``key_id`` is the one named."""
        if self.key_id is not None:
            return key_id == self.key_id
        return label == self.label

    def __str__(self) -> str:
        return f"label {self.label!r}" if self.key_id is None else f"id {self.key_id.hex().upper()}"


@dataclass(frozen=True)
class TokenSettings:
    """The ``[card]`` table's token keys. ``module`` is absolute (and was a regular file when read)."""

    interface: Interface = "piv"
    module: Path | None = None
    token_label: str | None = None
    token_serial: str | None = None
    old_keys: OldKeys = "delete"
    keys: tuple[KeySelector, ...] = ()
    """The keys to renew (PKCS#11); empty: every certificate whose private key is on the token."""

    @property
    def is_pkcs11(self) -> bool:
        return self.interface == "pkcs11"

    def selects(self, label: str, key_id: bytes) -> bool:
        """Whether the certificate with CKA_LABEL ``label`` and CKA_ID ``key_id`` is renewed
        (every one when ``keys`` is empty; the caller also requires its private key on the token)."""
        return not self.keys or any(k.matches(label, key_id) for k in self.keys)


def parse_token(card: Mapping[str, Any], base: Path, *, has_slots: bool = False) -> TokenSettings:
    """The token keys of the ``[card]`` table (keys and TOML types already checked by
    :func:`card.config_schema.check_schema`). ``base``: the directory a relative ``module`` is
    relative to (the configuration file's). ``has_slots``: ``renewal.slots`` was given.

    Raises:
        ConfigError: naming the key, e.g. ``card.interface 'pcsc': use "piv" or "pkcs11"``,
            ``card.module /x.so: not found``, a PKCS#11 key with ``interface = "piv"``.
    """
    interface = get(card, "interface", str, "card") or "piv"
    if interface not in INTERFACES:
        raise ConfigError(f"card.interface {interface!r}: use \"piv\" or \"pkcs11\"" + suggest(interface.lower(), list(INTERFACES)))
    old_keys = get(card, "old_keys", str, "card") or "delete"
    if old_keys not in OLD_KEYS:
        raise ConfigError(f"card.old_keys {old_keys!r}: use \"delete\" (the old key and certificate are deleted once "
                          "the new ones work) or \"keep\" (they are kept, labelled as superseded)")
    if interface == "piv":
        given = [k for k in ("module", "token_label", "token_serial", "keys") if k in card]
        if given:
            raise ConfigError(f"card.{given[0]} is read only with card.interface = \"pkcs11\" "
                              "(a PIV card is reached through PC/SC; its slots are renewal.slots)")
        return TokenSettings(old_keys=old_keys)
    if has_slots:
        raise ConfigError("renewal.slots names PIV slots; with card.interface = \"pkcs11\" name the keys to renew "
                          "with card.keys = [{ label = \"…\" }, { id = \"01\" }] (default: every certificate "
                          "whose private key is on the token)")
    return TokenSettings("pkcs11", _module(card, base), _token_label(card), _token_serial(card), old_keys,
                         _keys(card["keys"]) if "keys" in card else ())


def _module(card: Mapping[str, Any], base: Path) -> Path:
    """``card.module``: the PKCS#11 library, which must be a regular file (symlinks followed)."""
    value = get(card, "module", str, "card")
    if not value:
        raise ConfigError("card.interface = \"pkcs11\" needs card.module, the path of the token's PKCS#11 library "
                          "(e.g. module = \"/usr/lib/softhsm/libsofthsm2.so\")")
    if "\0" in value:
        raise ConfigError("card.module holds a NUL character")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(f"card.module {path}: not found (the token's PKCS#11 library, a .so file; "
                          "is the vendor's middleware installed?)") from None
    except OSError as exc:
        raise ConfigError(f"card.module {path}: cannot be read ({exc.strerror or exc.__class__.__name__})") from exc
    if not stat.S_ISREG(mode):
        raise ConfigError(f"card.module {path}: not a regular file (a PKCS#11 module is a shared library, a .so file)")
    return path


def _text(value: str, key: str) -> str:
    if not value.strip():
        raise ConfigError(f"card.{key} is empty (leave it out to take any token)")
    if any(not c.isprintable() for c in value):
        raise ConfigError(f"card.{key} holds a control character")
    return value


def _token_label(card: Mapping[str, Any]) -> str | None:
    value = get(card, "token_label", str, "card")
    if value is None:
        return None
    value = _text(value, "token_label").rstrip(" ")
    if len(value.encode("utf-8")) > TOKEN_LABEL_BYTES:
        raise ConfigError(f"card.token_label is longer than the {TOKEN_LABEL_BYTES} bytes a PKCS#11 token label holds "
                          "(CK_TOKEN_INFO.label): no token can match it")
    return value


def _token_serial(card: Mapping[str, Any]) -> str | None:
    value = get(card, "token_serial", str, "card")
    if value is None:
        return None
    value = _text(value, "token_serial").strip(" ")
    if len(value) > TOKEN_SERIAL_CHARS or not value.isascii():
        raise ConfigError(f"card.token_serial must be at most {TOKEN_SERIAL_CHARS} ASCII characters "
                          "(CK_TOKEN_INFO.serialNumber): no token can match it")
    return value


def parse_key_id(text: str) -> bytes:
    """A CKA_ID written as hex digits, optionally with ``:`` or spaces between bytes and a ``0x``
    prefix (``"01"``, ``"0x0A1B"``, ``"a1:b2"``).

    Raises:
        ValueError: not 1–255 bytes of hex (the caller names the key).
    """
    digits = text.strip().removeprefix("0x").removeprefix("0X").replace(":", "").replace(" ", "")
    if not digits or len(digits) % 2 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError("not hex digits")
    key_id = bytes.fromhex(digits)
    if len(key_id) > MAX_KEY_ID_BYTES:
        raise ValueError(f"longer than {MAX_KEY_ID_BYTES} bytes")
    return key_id


def _keys(entries: list[Any]) -> tuple[KeySelector, ...]:
    """``card.keys``: a list of ``{ label = "…" }`` / ``{ id = "…" }`` tables, none named twice."""
    out: list[KeySelector] = []
    for n, entry in enumerate(entries):
        where = f"card.keys[{n}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table like {{ label = \"Authentication\" }} or {{ id = \"01\" }}, "
                              f"not {value_words(entry)}")
        for key, item in entry.items():
            if key not in KEY_ENTRY:
                raise ConfigError(f"unknown key '{where}.{key}'" + suggest(key, list(KEY_ENTRY)))
            if not isinstance(item, str):
                raise ConfigError(f"{where}.{key} must be a string, not {value_words(item)}")
        if len(entry) != 1:
            raise ConfigError(f"{where} must name one key: {{ label = \"…\" }} (the certificate's CKA_LABEL) "
                              "or { id = \"01\" } (its CKA_ID in hex)")
        if "id" in entry:
            try:
                selector = KeySelector(key_id=parse_key_id(entry["id"]))
            except ValueError as exc:
                raise ConfigError(f"{where}.id {entry['id']!r}: {exc}; write the CKA_ID in hex, e.g. \"01\" "
                                  "or \"a1:b2\"") from exc
        else:
            selector = KeySelector(label=_text(entry["label"], f"keys[{n}].label"))
        if selector in out:
            raise ConfigError(f"card.keys names {selector} twice")
        out.append(selector)
    if not out:
        raise ConfigError("card.keys is empty; leave it out to renew every certificate whose private key is on "
                          "the token")
    return tuple(out)
