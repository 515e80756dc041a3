"""Fuzz tests (issue 11 item 6): the journal parser and the audit-line reader are total.

Whatever bytes are in a journal file or an audit line, :func:`card.journal.parse_journal` returns a
journal or raises :class:`~card.journal.JournalFileError`, and :func:`card.journal.parse_audit_line`
returns a record or raises :class:`~card.journal.AuditLineError` — nothing else, and each input is
bounded in size (so in time). At least 10,000 inputs each in CI (several strategies below).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from card.journal import (
    STEPS,
    AuditLineError,
    AuditLog,
    Journal,
    JournalFileError,
    SlotJournal,
    parse_audit_line,
    parse_journal,
)

def fuzz(examples: int) -> settings:
    """Reproducible in CI, no example database in the repo; each input is size-bounded."""
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _certificate() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Alex Example")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode())


CERT_PEM, KEY_PEM = _certificate()
VALID = Journal("A1" * 16, reference="CR-ABCDEF", slots={
    "9A": SlotJournal("9A", "f" * 64, CERT_PEM, "issued", {
        "grant_id": "g1", "slot": "9A", "subject_der_hex": "3000", "old_certificate_fingerprint": "f" * 64,
        "expires": "2030-01-01T00:00:00+00:00", "request_sent": "1"}, KEY_PEM, None, CERT_PEM, None),
    "9C": SlotJournal("9C", "e" * 64, CERT_PEM, "authorised"),
}, audit_pending=[{"time": "2026-01-01T00:00:00+00:00", "event_id": "00", "slot": "9A", "outcome": "renewed"}])
VALID_BYTES = VALID.to_json().encode()
VALID_RAW = json.loads(VALID_BYTES)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8)


def _journal_total(data: bytes) -> None:
    try:
        journal = parse_journal(data)
    except JournalFileError as exc:
        assert str(exc)  # a reason in words
        return
    # what parses is a journal the engine can use: known steps, PIV slots, a round trip
    assert all(sj.step in STEPS for sj in journal.slots.values())
    assert all(name == sj.slot for name, sj in journal.slots.items())
    assert parse_journal(journal.to_json().encode()) == journal
    _ = journal.finished


def test_the_valid_journal_parses() -> None:
    assert parse_journal(VALID_BYTES) == VALID


@fuzz(2500)
@given(st.binary(max_size=4096))
def test_journal_parser_on_any_bytes(data: bytes) -> None:
    _journal_total(data)


@fuzz(2500)
@given(st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "truncate"]), st.integers(0, len(VALID_BYTES)),
                          st.binary(min_size=1, max_size=8)), min_size=1, max_size=4))
def test_journal_parser_on_mutations_of_a_real_journal(mutations: list[tuple[str, int, bytes]]) -> None:
    data = bytearray(VALID_BYTES)
    for op, at, blob in mutations:
        at = min(at, len(data))
        if op == "flip" and at < len(data):
            data[at] ^= blob[0] or 1
        elif op == "cut":
            del data[at:at + len(blob)]
        elif op == "insert":
            data[at:at] = blob
        else:
            del data[at:]
    _journal_total(bytes(data))


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


FIELD_PATHS = [p for p in _paths(VALID_RAW) if p]


@fuzz(2500)
@given(st.lists(st.tuples(st.sampled_from(FIELD_PATHS), st.one_of(JSON_VALUES, st.just("<delete>"))), min_size=1,
                max_size=3),
       st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=2))
def test_journal_parser_on_journals_with_fields_replaced(changes: list, extra: dict) -> None:  # type: ignore[type-arg]
    raw = json.loads(VALID_BYTES)
    for path, value in changes:
        node = raw
        try:
            for key in path[:-1]:
                node = node[key]
            if value == "<delete>":
                del node[path[-1]]
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    if isinstance(raw, dict) and extra and changes[0][0] == ("slots",):
        raw.update(extra)
    _journal_total(json.dumps(raw).encode())


@fuzz(2500)
@given(JSON_VALUES)
def test_journal_parser_on_any_json(value: object) -> None:
    _journal_total(json.dumps(value).encode())


def test_journal_parser_bounds_its_input() -> None:
    for data in (b"[" * 200_000, b"{" * 200_000, b" " * (2 << 20), b'"' + b"a" * (2 << 20) + b'"'):
        try:
            parse_journal(data)
        except JournalFileError:
            continue
        raise AssertionError("accepted")


# -- the audit line reader ----------------------------------------------------------------------
VALID_LINE = json.dumps({"time": "2026-12-03T10:00:00+00:00", "event_id": "ab", "slot": "9A", "outcome": "renewed",
                         "reference": "CR-ABCDEF", "card_guid": "A1" * 16}, sort_keys=True).encode()


def _audit_total(line: bytes) -> None:
    try:
        record = parse_audit_line(line)
    except AuditLineError as exc:
        assert str(exc)
        return
    assert isinstance(record, dict) and isinstance(record["time"], str)
    json.dumps(record)  # printable by `cardrenew audit`


@fuzz(4000)
@given(st.binary(max_size=2048))
def test_audit_line_reader_on_any_bytes(line: bytes) -> None:
    _audit_total(line)


@fuzz(3000)
@given(st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "truncate"]), st.integers(0, len(VALID_LINE)),
                          st.binary(min_size=1, max_size=6)), min_size=1, max_size=3))
def test_audit_line_reader_on_mutations_of_a_real_line(mutations: list[tuple[str, int, bytes]]) -> None:
    data = bytearray(VALID_LINE)
    for op, at, blob in mutations:
        at = min(at, len(data))
        if op == "flip" and at < len(data):
            data[at] ^= blob[0] or 1
        elif op == "cut":
            del data[at:at + len(blob)]
        elif op == "insert":
            data[at:at] = blob
        else:
            del data[at:]
    _audit_total(bytes(data))


@fuzz(3000)
@given(JSON_VALUES | st.dictionaries(st.sampled_from(["time", "slot", "outcome", "event_id"]), JSON_VALUES))
def test_audit_line_reader_on_any_json(value: object) -> None:
    _audit_total(json.dumps(value).encode())


@fuzz(300)
@given(st.lists(st.one_of(st.just(VALID_LINE), st.binary(max_size=200).filter(lambda b: b"\n" not in b)), max_size=12),
       st.integers(0, 15))
def test_audit_log_reader_on_logs_with_torn_and_foreign_lines(tmp_path_factory, lines: list[bytes], count: int) -> None:  # type: ignore[no-untyped-def]
    path: Path = tmp_path_factory.mktemp("audit") / "audit.log"
    path.write_bytes(b"\n".join(lines))
    reading = AuditLog(path).read(count)
    good = sum(1 for line in lines if line == VALID_LINE or _is_record(line))
    assert len(reading.entries) == min(count, good)
    assert all(isinstance(e, dict) for e in reading.entries)


def _is_record(line: bytes) -> bool:
    try:
        parse_audit_line(line)
    except AuditLineError:
        return False
    return bool(line.strip())
