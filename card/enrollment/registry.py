"""The issuer types by name: ``[issuer] type = "…"`` → (its settings parser, its issuer factory).

The configuration loader asks this module for the ``[issuer]`` table's keys (:data:`TABLE_KEYS`)
and settings (:func:`parse_issuer_table`, into ``Settings.issuer``); the assembly makes the issuer
with :func:`make_issuer`. Nothing else in the program names an issuer type.

Adding an issuer (two files):

1. ``card/enrollment/<name>.py``: a frozen settings dataclass (``issuer_type: ClassVar[str]``, a
   ``ca_fingerprint`` field, see :class:`~card.enrollment.settings.IssuerSettings`); a dict of the
   ``[issuer]`` keys it reads with their TOML types; ``parse(table, base)`` returning the settings
   (reading with :func:`card.config_schema.get`, raising ConfigError naming the key, requiring no
   key); ``make(settings, window_days, cancel)`` returning an object that implements every member
   of :class:`card.enrollment.base.Issuer` (``make`` raises ConfigError for a missing key).
2. One ``register(IssuerType("<name>", KEYS, parse, make))`` line at the end of this file.

The ``[issuer]`` table then accepts the new keys (an unknown key still names the nearest one), and
``type = "<name>"`` picks the new issuer; an unknown type's error lists it. Keep that module's
imports light (import what is heavy, such as cryptography, inside ``make``, or split it into a second
module as local/scep do) when start-up matters: this module and the settings parsers import no
cryptography (the TUI reads its configuration before its first frame and makes the issuer after
it, issue 7).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from card.config_errors import ConfigError
from card.config_schema import get
from card.enrollment.local_settings import LOCAL_KEYS, make_local_ca, parse_local_table
from card.enrollment.scep_settings import SCEP_KEYS, make_scep_issuer, parse_scep_table
from card.enrollment.settings import IssuerSettings

if TYPE_CHECKING:
    from card.config import Settings
    from card.enrollment.base import Issuer

S = TypeVar("S", bound=IssuerSettings)

DEFAULT_TYPE = "local"
"""The issuer type of a configuration whose ``[issuer]`` names none."""


@dataclass(frozen=True)
class IssuerType(Generic[S]):
    """One kind of issuer.

    ``name``: its ``type = "…"``. ``keys``: the ``[issuer]`` keys it reads, with their TOML types.
    ``parse(table, base)``: the ``[issuer]`` table (``base``: the configuration file's directory,
    for relative paths) → its frozen settings, reading only ``keys``; it raises ConfigError naming
    the key for a wrong value and must not require a key (the factory does: the table is shared,
    see :func:`parse_issuer_table`). ``make(settings, window_days, cancel)`` → the issuer; raises
    ConfigError for a missing key, IssuerUnavailable when it cannot be opened.
    """

    name: str
    keys: Mapping[str, tuple[type, ...]]
    parse: Callable[[Mapping[str, Any], Path], S]
    make: Callable[[S, int, threading.Event | None], Issuer]


REGISTRY: dict[str, IssuerType[Any]] = {}
"""The issuer types by their ``type`` name, in the order they were registered (and are listed)."""
TABLE_KEYS: dict[str, tuple[type, ...]] = {"type": (str,)}
"""The ``[issuer]`` table's keys and their TOML types: ``type`` and every registered type's keys
(the configuration's schema holds this very dict)."""


def register(kind: IssuerType[Any]) -> None:
    """Add ``kind`` to :data:`REGISTRY` and its keys to :data:`TABLE_KEYS`.

    Raises:
        ValueError: the name is taken, or a key another type reads takes other TOML types there.
    """
    if kind.name in REGISTRY:
        raise ValueError(f"issuer type {kind.name!r} is registered already")
    for key, kinds in kind.keys.items():
        if key == "type" or TABLE_KEYS.get(key, kinds) != kinds:
            raise ValueError(f"issuer type {kind.name!r}: issuer.{key} is read by another type as {TABLE_KEYS[key]}")
    REGISTRY[kind.name] = kind
    TABLE_KEYS.update(kind.keys)


def type_names() -> str:
    """The registered type names for a message: ``"local" or "scep"``, ``"a", "b" or "c"``."""
    names = [f'"{name}"' for name in REGISTRY]
    return " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]


def parse_issuer_table(table: Mapping[str, Any], base: Path) -> IssuerSettings:
    """The settings of the issuer type ``table`` names (``type``, default ``"local"``).

    The ``[issuer]`` table is shared by the types: a file may keep another type's keys beside its
    own (the README's example lists the SCEP keys under the local ones, to switch by ``type``).
    Every registered type checks its own keys, whichever type is chosen, so a wrong value is never
    kept silently; the chosen type's settings are returned. The keys' TOML types are checked before
    (:data:`TABLE_KEYS`, by the configuration's schema).

    Raises:
        ConfigError: an unknown type — ``issuer.type 'est': use "local" or "scep"``, naming every
            registered type — or a wrong value (naming the key).
    """
    name = get(table, "type", str, "issuer")
    if name is not None and name not in REGISTRY:
        raise ConfigError(f"issuer.type {name!r}: use {type_names()}")
    parsed: dict[str, IssuerSettings] = {kind.name: kind.parse(table, base) for kind in REGISTRY.values()}
    return parsed[name or DEFAULT_TYPE]


def make_issuer(settings: Settings, window_days: int | None = None, cancel: threading.Event | None = None) -> Issuer:
    """The issuer the configuration names (``settings.issuer``), made now.

    Args:
        window_days: the renewal window (days) the issuer checks; None: ``settings.window_days``.
        cancel: when set, ends the issuer's waits (SCEP: HTTP replies, the RA hook, the PENDING
            poll) with OperationCancelled.

    Raises:
        ConfigError: the type is not registered, or a setting it needs is missing or wrong.
        IssuerUnavailable: the issuer cannot be opened.
    """
    kind = REGISTRY.get(settings.issuer.issuer_type)
    if kind is None:
        raise ConfigError(f"issuer.type {settings.issuer.issuer_type!r} is not available in this version")
    return kind.make(settings.issuer, window_days or settings.window_days, cancel)


register(IssuerType("local", LOCAL_KEYS, parse_local_table, make_local_ca))
register(IssuerType("scep", SCEP_KEYS, parse_scep_table, make_scep_issuer))
