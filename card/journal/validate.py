"""Reading a journal file: :func:`parse_journal` accepts exactly the schema of :mod:`card.journal`
(the field types are read from the :class:`~card.journal.records.Journal` and
:class:`~card.journal.records.SlotJournal` data model) and raises :class:`JournalFileError` for
anything else."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import types
import typing
from collections.abc import Callable
from typing import Any

from card.journal.audit_lines import AuditLineError, check_audit_record
from card.journal.records import INTERFACES, JOURNAL_VERSION, STEPS, Journal, JournalStep, SlotJournal

MAX_JOURNAL_BYTES = 1 << 20
"""A journal larger than this (1 MiB) is not ours: it is set aside unread."""
MAX_KEY_ID_BYTES = 64
"""The longest ``CKA_ID`` a PKCS#11 journal may name (ours are 16 bytes; tokens use 1–20)."""


class JournalFileError(ValueError):
    """A journal file is not a journal this version can resume from (the reason in words)."""


def parse_journal(data: bytes, card_id: str | None = None) -> Journal:
    """Parse the bytes of a journal file (schema in the module docstring).

    Args:
        card_id: when given, the journal must be this card's.

    Returns:
        The journal, every field of the type the data model gives it, every slot a PIV slot
        written as the field writes it (``9A``), every step a known step, every PEM parsing.

    Raises:
        JournalFileError: not UTF-8, not JSON, nested too deeply, too large, not an object, a
            missing or unknown field, a field of the wrong type, an unknown slot or step, a PEM
            that does not parse, another card's journal, or another journal version.
    """
    if len(data) > MAX_JOURNAL_BYTES:
        raise JournalFileError(f"larger than {MAX_JOURNAL_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JournalFileError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        raw = json.loads(text)
    except RecursionError:
        raise JournalFileError("not JSON (nested too deeply)") from None
    except ValueError as exc:
        raise JournalFileError(f"not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise JournalFileError(f"not a journal (a JSON {type(raw).__name__}, not an object)")
    if raw.get("version") != JOURNAL_VERSION or isinstance(raw.get("version"), bool):
        raise JournalFileError(f"journal version {raw.get('version')!r}; this version of cardrenew reads {JOURNAL_VERSION}")
    fields = _check_fields(raw, Journal, "journal")
    interface = fields.get("interface", "piv")
    if interface not in INTERFACES:
        raise JournalFileError(f"unknown interface {str(interface)[:16]!r}")
    slots_raw = fields.get("slots", {})
    slots: dict[str, SlotJournal] = {}
    for name, value in slots_raw.items():
        slots[name] = _parse_slot(name, value, interface)
    fields["slots"] = slots
    journal = Journal(**fields)
    if not journal.card_id or len(journal.card_id) > 200:
        raise JournalFileError("the card id is empty or too long")
    if card_id is not None and journal.card_id != card_id:
        raise JournalFileError(f"the journal of another card ({journal.card_id[:40]})")
    for record in journal.audit_pending:
        try:
            check_audit_record(record)
        except AuditLineError as exc:
            raise JournalFileError(f"a kept audit record is {exc}") from None
    return journal


def _check_key_name(name: str, interface: str) -> None:
    """A slot name as cardrenew writes it: a PIV slot (``"9A"``), or on a PKCS#11 token a ``CKA_ID``
    in upper-case hex of 1 to :data:`MAX_KEY_ID_BYTES` bytes."""
    if interface == "pkcs11":
        try:
            key_id = bytes.fromhex(name)
        except ValueError:
            key_id = b""
        if not key_id or len(key_id) > MAX_KEY_ID_BYTES or key_id.hex().upper() != name:
            raise JournalFileError(f"names key {name[:16]!r}, which is not a CKA_ID in hex as cardrenew writes it")
        return
    from card.piv import Slot

    try:
        slot = Slot.parse(name)
    except (ValueError, TypeError):
        raise JournalFileError(f"names slot {name[:16]!r}, which is not a PIV key slot") from None
    if slot.hex != name:
        raise JournalFileError(f"names slot {name[:16]!r} (written {slot.hex} by cardrenew)")


def _parse_slot(name: str, value: object, interface: str = "piv") -> SlotJournal:
    _check_key_name(name, interface)
    if not isinstance(value, dict):
        raise JournalFileError(f"slot {name}: not an object")
    fields = _check_fields(value, SlotJournal, f"slot {name}")
    if fields["slot"] != name:
        raise JournalFileError(f"slot {name} says it is slot {str(fields['slot'])[:16]!r}")
    step = fields.get("step", JournalStep.PLANNED)
    if step not in STEPS:
        raise JournalFileError(f"slot {name}: unknown step {str(step)[:32]!r}")
    fields["step"] = JournalStep(step)
    sj = SlotJournal(**fields)
    _check_pem(sj, name)
    for attr in ("old_key_id", "new_key_id"):
        key_id = getattr(sj, attr)
        if key_id is not None:
            if interface != "pkcs11":
                raise JournalFileError(f"slot {name}: {attr} in a PIV journal")
            _check_key_name(key_id, interface)
    if sj.label is not None and (interface != "pkcs11" or len(sj.label) > 256):
        raise JournalFileError(f"slot {name}: a label in a PIV journal, or longer than 256 characters")
    if sj.grant is not None:
        for key in ("grant_id", "slot", "subject_der_hex", "old_certificate_fingerprint", "expires"):
            if key not in sj.grant:
                raise JournalFileError(f"slot {name}: the grant has no {key}")
        try:
            expires = dt.datetime.fromisoformat(sj.grant["expires"])
            bytes.fromhex(sj.grant["subject_der_hex"])
        except ValueError:
            raise JournalFileError(f"slot {name}: the grant's expiry or subject is malformed") from None
        if expires.tzinfo is None:
            raise JournalFileError(f"slot {name}: the grant's expiry has no time zone")
    return sj


def _check_pem(sj: SlotJournal, name: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from card.certificates import load_certificate_pem  # also a negative serial (an old CA's), as the engine reads it

    loaders: dict[str, Callable[[bytes], Any]] = {
        "old_certificate_pem": load_certificate_pem,
        "certificate_pem": load_certificate_pem,
        "public_key_pem": serialization.load_pem_public_key,
        "csr_pem": x509.load_pem_x509_csr,
    }
    for attr, load in loaders.items():
        text = getattr(sj, attr)
        if text is None:
            continue
        try:
            loaded = load(text.encode("utf-8"))
            if attr.endswith("certificate_pem"):
                loaded.public_key()  # an unsupported or broken key fails here, not in the engine
                loaded.not_valid_after_utc  # noqa: B018 - a broken validity fails here
                _ = loaded.subject.rfc4514_string()
        except Exception:  # noqa: BLE001 - cryptography raises ValueError, TypeError, UnsupportedAlgorithm …
            raise JournalFileError(f"slot {name}: {attr} does not parse") from None


def _check_fields(raw: dict[str, Any], cls: type, where: str) -> dict[str, Any]:
    """The object's fields, each checked against the data model's type hint."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise JournalFileError(f"{where}: unknown field {str(key)[:40]!r}")
        if not _conforms(value, hints[key]):
            raise JournalFileError(f"{where}: {key} is not a {_type_words(hints[key])}")
        out[key] = value
    for name, f in known.items():
        if name not in out and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise JournalFileError(f"{where}: no {name}")
    return out


def _conforms(value: object, hint: object) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, float):
        return isinstance(value, hint)
    if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
        return isinstance(value, str)  # which member: checked by the caller, in its own words
    if origin is dict:
        key_hint, value_hint = args or (Any, Any)
        if not isinstance(value, dict):
            return False
        if dataclasses.is_dataclass(value_hint):
            return all(_conforms(k, key_hint) for k in value)  # checked by their own parser
        return all(_conforms(k, key_hint) and _conforms(v, value_hint) for k, v in value.items())
    if origin is list:
        (item_hint,) = args or (Any,)
        return isinstance(value, list) and all(_conforms(v, item_hint) for v in value)
    return False


def _type_words(hint: object) -> str:
    if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
        return "str"
    return str(hint).replace("typing.", "")
