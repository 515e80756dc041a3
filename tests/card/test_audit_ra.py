"""An audit the RA can use (issue 15): every attempt recorded with who and where, chained records
that ``cardrenew audit --verify`` checks (an edited line, a removed or inserted one, a cut end),
and the export (``--since``, ``--outcome``, ``--format csv|json``). Each test failed before: the
log had no operator, host, chain, export or verify, and wrong PINs and runs were not recorded."""

from __future__ import annotations

import csv
import io
import json
import os
import pwd
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from card.backend import Backend
from card.errors import InvalidPinError, PinBlockedError
from card.journal import AuditLog, verify_chain
from card.secret import Secret
from card.service import RenewalRequest
from tui.cli import main
from tests.card.test_service_door import door  # noqa: F401 - the in-process door fixture, shared
from tui.cli.exit_codes import EXIT_AUDIT_BROKEN, EXIT_OK

PIN = "123456"
TIMEOUT_S = 60


def write_records(log: AuditLog, count: int) -> None:
    for i in range(count):
        log.write(event="renewal", outcome="renewed" if i % 2 else "wrong_pin", reference=f"REF-{i}", holder=f"H {i}")


def lines_of(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().split(b"\n")[:-1]


def put_lines(log: AuditLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(line + b"\n" for line in lines))


# -- who and where --------------------------------------------------------------------------
def test_every_record_names_the_operator_the_host_and_the_ssh_client(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SSH_CONNECTION", "192.0.2.7 50022 198.51.100.1 22")
    monkeypatch.delenv("SSH_CLIENT", raising=False)
    log = AuditLog(tmp_path / "audit.log")
    record = log.write(event="renewal", outcome="renewed")
    assert record["operator"] == pwd.getpwuid(os.geteuid()).pw_name
    assert record["host"] == socket.gethostname()
    assert record["ssh_client"] == "192.0.2.7"
    assert json.loads(lines_of(log)[0])["ssh_client"] == "192.0.2.7"


# -- the chain --------------------------------------------------------------------------------
def test_an_untouched_log_verifies(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    write_records(log, 5)
    report = verify_chain(log.path)
    assert report.intact and report.records == 5


def test_an_edited_line_is_found_at_the_line_after_it(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    write_records(log, 5)
    lines = lines_of(log)
    lines[2] = lines[2].replace(b'"outcome": "renewed"', b'"outcome": "wrong_pin"').replace(
        b'"outcome": "wrong_pin"', b'"outcome": "renewed"')
    assert lines[2] != lines_of(log)[2]
    put_lines(log, lines)
    report = verify_chain(log.path)
    assert not report.intact
    assert report.problems[0][0] == 4 and "line 3 was edited" in report.problems[0][1]


def test_a_removed_line_and_an_inserted_line_are_found(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    write_records(log, 5)
    lines = lines_of(log)
    put_lines(log, lines[:1] + lines[2:])
    assert [n for n, _ in verify_chain(log.path).problems] == [2]
    put_lines(log, lines[:3] + [lines[0]] + lines[3:])
    assert 4 in [n for n, _ in verify_chain(log.path).problems]


def test_a_cut_end_is_found_by_the_head_file(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    write_records(log, 5)
    put_lines(log, lines_of(log)[:-1])  # the newest record removed: the chain itself still holds
    report = verify_chain(log.path)
    assert not report.intact and "cut" in report.problems[0][1]


def test_an_edited_last_line_is_found_by_the_head_file(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    write_records(log, 3)
    lines = lines_of(log)
    lines[-1] = lines[-1].replace(b"REF-2", b"REF-9")
    put_lines(log, lines)
    report = verify_chain(log.path)
    assert not report.intact and "head file" in report.problems[0][1]


def test_a_torn_line_is_a_note_and_the_chain_goes_on_through_it(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    write_records(log, 2)
    with open(log.path, "ab") as f:
        f.write(b'{"time": "2026-12-0')  # a write torn by a crash
    write_records(log, 2)
    report = verify_chain(log.path)
    assert report.intact, report.problems
    assert report.records == 4 and any("not an audit record" in words for _, words in report.notes)


def test_two_programs_appending_at_once_keep_one_chain(tmp_path: Path) -> None:
    """The TUI and a `renew` may append at the same moment: the lock keeps each record's `prev` the
    line really before it."""
    path = tmp_path / "audit.log"
    code = ("import sys; from card.journal import AuditLog; log = AuditLog(sys.argv[1]); "
            "[log.write(event='renewal', outcome='renewed', n=i) for i in range(60)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)]) for _ in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    report = verify_chain(path)
    assert report.records == 180 and report.intact, report.problems


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(2, 6), data=st.data())
def test_any_change_to_the_bytes_of_a_log_is_found(tmp_path: Path, count: int, data: st.DataObject) -> None:
    """Property: overwrite any byte, remove any span or cut anywhere — verify never says "as written"
    unless the bytes are unchanged, and never raises."""
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "audit.log"  # a new log for each example
    log = AuditLog(path)
    write_records(log, count)
    original = path.read_bytes()
    kind = data.draw(st.sampled_from(["byte", "span", "cut"]))
    at = data.draw(st.integers(0, 1 << 20)) % len(original)  # the log's length varies (times, event ids)
    if kind == "byte":
        changed = original[:at] + bytes([data.draw(st.integers(0, 255))]) + original[at + 1:]
    elif kind == "span":
        end = at + 1 + data.draw(st.integers(0, 1 << 20)) % (len(original) - at)
        changed = original[:at] + original[end:]
    else:
        changed = original[:at]
    path.write_bytes(changed)
    report = verify_chain(path)
    assert report.intact == (changed == original)


# -- every attempt --------------------------------------------------------------------------
def events(door: Backend) -> list[dict[str, object]]:
    return [e for e in door.audit.read(None).entries if e.get("event") in ("log_on", "renewal")]


def test_a_wrong_and_a_blocked_pin_at_logon_are_audited_without_the_pin(door: Backend) -> None:
    for _ in range(3):
        with pytest.raises((InvalidPinError, PinBlockedError)):
            door.log_on(Secret("97979797")).result(TIMEOUT_S)
    with pytest.raises(PinBlockedError):
        door.log_on(Secret("97979797")).result(TIMEOUT_S)
    seen = [(e["outcome"], e["tries_left"]) for e in events(door)]
    assert seen == [("wrong_pin", 2), ("wrong_pin", 1), ("blocked", 0), ("blocked", 0)]
    assert b"97979797" not in door.audit.path.read_bytes()


def test_a_renewed_run_adds_no_record_beside_the_per_slot_ones(door: Backend) -> None:
    """One ``renewed`` record per certificate stays the count the RA relies on."""
    result = door.renew(RenewalRequest(Secret(PIN))).result(TIMEOUT_S)
    assert result.ok
    records = door.audit.read(None).entries
    assert sorted(e["slot"] for e in records if e["outcome"] == "renewed") == ["9A", "9C"]
    assert [e for e in records if e.get("event") == "renewal"] == []


def test_a_renewal_with_a_wrong_pin_and_one_stopped_at_next_are_audited(door: Backend) -> None:
    with pytest.raises(InvalidPinError):
        door.renew(RenewalRequest(Secret("97979797"))).result(TIMEOUT_S)
    door.renew(RenewalRequest(Secret(PIN), between_slots=lambda _slot: False)).result(TIMEOUT_S)
    outcomes = [e["outcome"] for e in events(door) if e["event"] == "renewal"]
    assert outcomes == ["wrong_pin", "aborted"]


# -- the command ---------------------------------------------------------------------------------
@pytest.fixture
def state(tmp_path: Path, monkeypatch) -> AuditLog:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    from card.config import load_settings

    return AuditLog(load_settings(None).state_dir / "audit.log")


def test_audit_verify_says_intact_then_exit_14_after_an_edit(state: AuditLog, capsys) -> None:  # type: ignore[no-untyped-def]
    write_records(state, 4)
    assert main(["audit", "--verify"]) == EXIT_OK
    assert "4 chained records are as they were written" in capsys.readouterr().out
    lines = lines_of(state)
    lines[1] = lines[1].replace(b"H 1", b"H X")
    put_lines(state, lines)
    assert main(["audit", "--verify"]) == EXIT_AUDIT_BROKEN
    out = capsys.readouterr().out
    assert "audit.log line 3: does not follow line 2" in out and "was changed after it was written" in out


def test_export_failed_since_a_date_as_csv_and_json(state: AuditLog, capsys) -> None:  # type: ignore[no-untyped-def]
    state.write(event="renewal", outcome="renewed", holder="Ann")
    state.write(event="log_on", outcome="wrong_pin", tries_left=2, holder="=HYPERLINK(\"http://x\")")
    state.write(event="renewal", outcome="ca_refused", holder="Bo")
    lines = lines_of(state)
    old = json.loads(lines[2])
    old["time"] = "2020-01-01T00:00:00+00:00"  # an old failure: --since leaves it out
    put_lines(state, lines[:2] + [json.dumps(old, sort_keys=True).encode()])
    assert main(["audit", "--outcome", "failed", "--since", "2026-01-01", "--format", "csv"]) == EXIT_OK
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["outcome"], r["holder"], r["tries_left"]) for r in rows] == [
        ("wrong_pin", "'=HYPERLINK(\"http://x\")", "2")]  # a formula never reaches a spreadsheet as one
    assert main(["audit", "--outcome", "failed", "--format", "json"]) == EXIT_OK
    assert [r["outcome"] for r in json.loads(capsys.readouterr().out)] == ["wrong_pin", "ca_refused"]


def test_a_bad_since_date_is_a_usage_error(state: AuditLog, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as done:
        main(["audit", "--since", "yesterday"])
    assert done.value.code == 2 and "'yesterday' is not a date" in capsys.readouterr().err


def test_a_log_of_one_huge_line_is_not_called_empty(state: AuditLog, capsys) -> None:  # type: ignore[no-untyped-def]
    """Break-it 10: a log of NUL bytes larger than the read limit said "it is empty"."""
    from card.journal import MAX_AUDIT_READ_BYTES

    state.path.parent.mkdir(parents=True, exist_ok=True)
    with open(state.path, "wb") as f:
        f.truncate(MAX_AUDIT_READ_BYTES + 10)
    assert main(["audit"]) == EXIT_OK
    err = capsys.readouterr().err
    assert "it is empty" not in err and "not an audit record" in err


def test_verify_never_vouches_for_records_written_before_the_chain(state: AuditLog, capsys) -> None:  # type: ignore[no-untyped-def]
    """Tester F-25: a forged record slipped among the pre-chain lines was counted in "as it was
    written: 78 records". The summary now counts only what the chain proves."""
    state.path.parent.mkdir(parents=True, exist_ok=True)
    old = [json.dumps({"time": "2026-11-01T00:00:00+00:00", "outcome": "renewed", "n": i}) for i in range(3)]
    state.path.write_text("\n".join(old) + "\n")
    write_records(state, 2)
    lines = lines_of(state)
    forged = json.dumps({"time": "2026-12-04T00:00:00+00:00", "outcome": "renewed", "operator": "eve"}).encode()
    put_lines(state, lines[:2] + [forged] + lines[2:])
    from card.journal.audit_chain import head_path
    head = json.loads(head_path(state.path).read_text())
    head["size"] = state.path.stat().st_size  # whoever can write the log can write the head
    head_path(state.path).write_text(json.dumps(head))
    assert main(["audit", "--verify"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "2 chained records are as they were written" in out
    assert "4 records written before the log was chained cannot be checked" in out


def test_the_audit_names_the_card_as_the_screen_shows_it(door: Backend) -> None:
    """A support engineer greps the log for the GUID the holder reads off ``status`` or the Card tab
    (8-4-4-4-12). Was: the records held the 32 bare hex digits and the grep found nothing."""
    shown = door.read_card().result(TIMEOUT_S).guid_text
    with pytest.raises(InvalidPinError):
        door.renew(RenewalRequest(Secret("97979797"))).result(TIMEOUT_S)
    assert door.renew(RenewalRequest(Secret(PIN))).result(TIMEOUT_S).ok
    named = [e for e in door.audit.read(None).entries if e.get("card_guid")]
    assert {e["outcome"] for e in named} >= {"wrong_pin", "renewed"}
    assert shown and {e["card_guid"] for e in named} == {shown}
    renewed = [e for e in named if e["outcome"] == "renewed"]  # break-it B-3: no holder, no event
    assert len(renewed) == 2 and all(e["holder"] == "Alex Example" and e["event"] == "certificate" for e in renewed)


def test_records_written_before_the_dashes_are_printed_with_them(state: AuditLog, capsys) -> None:  # type: ignore[no-untyped-def]
    """Break-it B-3: records written before the GUID was kept as ``status`` shows it printed 32 bare
    hex digits, so one filter on the GUID the holder reads missed a card's older records."""
    state.append(state.record(event="log_on", outcome="wrong_pin") | {"card_guid": "A5AF68815B76A67FBDC4A251014EB830"})
    assert state.read(None).entries[-1]["card_guid"] == "A5AF68815B76A67FBDC4A251014EB830"  # the file as written
    assert main(["audit", "--format", "json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)[-1]["card_guid"] == "A5AF6881-5B76-A67F-BDC4-A251014EB830"
    assert main(["audit", "--verify"]) == EXIT_OK  # the chain is the file's, untouched
