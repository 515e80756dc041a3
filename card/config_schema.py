"""The configuration's key checks (DESIGN §8): which keys a table may hold and the TOML types
each takes; an unknown key names the nearest known one. A leaf module, shared by the loader
(:mod:`card.config`) and the issuers' ``[issuer]`` table parsers (:mod:`card.enrollment.registry`)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from card.config_errors import ConfigError

Schema = Mapping[str, Mapping[str, tuple[type, ...]]]
"""Tables ("" = top level) → their keys → the TOML types each takes (Python types as tomllib gives them)."""

NUMBER = (int, float)
"""A key that takes a whole number or a decimal one (``timeout_s = 15`` and ``= 0.5``)."""

_TYPE_WORDS = {int: "a whole number", float: "a number", str: "a string", list: "a list", bool: "true or false",
               dict: "a table"}


def type_words(kinds: tuple[type, ...]) -> str:
    """The TOML types ``kinds`` in words: ``"a string or a list"``."""
    if kinds == NUMBER:
        return "a number"
    return " or ".join(_TYPE_WORDS.get(kind, kind.__name__) for kind in kinds)


def value_words(value: object) -> str:
    """What a TOML value is, in words (for "must be X, not Y")."""
    for kind in (bool, int, float, str, list, dict):
        if isinstance(value, kind):
            return _TYPE_WORDS[kind]
    return "a date or time"


def suggest(name: str, known: list[str]) -> str:
    """`` (did you mean 'url'?)`` for the known name nearest to ``name``, or "" when none is near."""
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def check_schema(raw: Mapping[str, Any], schema: Schema, slot_entry: Mapping[str, tuple[type, ...]]) -> None:
    """Refuse unknown tables and keys, and values of the wrong TOML type, naming the key; then the
    same for each ``renewal.slots`` entry against ``slot_entry``.

    Raises:
        ConfigError: the first problem found (the caller adds the file name).
    """
    tables = [t for t in schema if t]
    for name, value in raw.items():
        if name in schema[""]:
            table, items = "", {name: value}
        elif name in schema:
            if not isinstance(value, dict):
                raise ConfigError(f"[{name}] must be a table")
            table, items = name, value
        else:
            raise ConfigError(f"unknown key '{name}'" + suggest(name, tables + list(schema[""])))
        for key, item in items.items():
            where = f"{table}.{key}" if table else key
            kinds = schema[table].get(key)
            if kinds is None:
                raise ConfigError(f"unknown key '{where}'" + suggest(key, list(schema[table])))
            if not isinstance(item, kinds) or (isinstance(item, bool) and bool not in kinds):
                raise ConfigError(f"{where} must be {type_words(kinds)}, not {value_words(item)}")
    for n, entry in enumerate(raw.get("renewal", {}).get("slots", [])):
        where = f"renewal.slots[{n}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table like {{ slot = \"9A\", label = \"PIV Authentication\" }}, "
                              f"not {value_words(entry)}")
        for key, item in entry.items():
            if key not in slot_entry:
                raise ConfigError(f"unknown key '{where}.{key}'" + suggest(key, list(slot_entry)))
            if not isinstance(item, slot_entry[key]):
                raise ConfigError(f"{where}.{key} must be {type_words(slot_entry[key])}, not {value_words(item)}")


def get(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    """``table[key]`` (None when absent) if it is of TOML type ``kind`` (a bool is not a whole number).

    Raises:
        ConfigError: "``where.key`` must be a string" (…).
    """
    value = table.get(key)
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        names = {int: "a whole number", str: "a string", list: "a list", bool: "true or false"}
        raise ConfigError(f"{where}.{key} must be {names.get(kind, kind.__name__)}")
    return value
