"""Issue 11, item 5 and the journal/audit parts of item 6: the files cardrenew writes.

Preflight checks the state directory, journal and audit log before the CA is asked; a file error
after the card changed ends on the documented error path (exit 13, never 1, never INTERNAL), the
audit record waits in the journal and is written by the next run; journal files that are not
journals are set aside and reported; the audit reader skips what is not a record.

The real ``cardrenew renew`` code path is driven in process (``tui.cli.main``) on the in-process
card; ``card.atomic``'s fault hook makes chosen writes fail.
"""

from __future__ import annotations

import errno
import io
import json
import os
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from card import atomic
from card.certificates import key_matches
from card.config import Settings
from card.emulator.card import SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA
from card.errors import StateFileError
from card.journal import AuditLog, JournalStore, parse_journal
from card.piv import KeyType, PivSession, Slot
from card.renewal import RenewalContext, read_card, renew
from card.secret import Secret
from card.service import CardService

PIN = "123456"
SLOTS = (Slot.AUTHENTICATION, Slot.SIGNATURE)


# -- helpers -----------------------------------------------------------------------------------
class CountingCA:
    """The embedded CA, counting what it is asked (a preflight failure must ask nothing)."""

    def __init__(self, ca: LocalCA) -> None:
        self._ca = ca
        self.asked: list[str] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        value = getattr(self._ca, name)
        if name in ("authorize_renewal", "issue"):
            def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
                self.asked.append(name)
                return value(*args, **kwargs)
            return counted
        return value


def state_dir() -> Path:
    return Settings().state_dir  # $XDG_STATE_HOME/cardrenew: a temp dir per test (conftest)


def new_card(ca: LocalCA, tmp_path: Path) -> SoftPivCard:
    return SoftPivCard(create_card_state(ca, expires_in_days=30, key_type=KeyType.ECCP256), tmp_path / "card.json")


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], card: SoftPivCard, issuer: object,
            *extra: str) -> tuple[int, dict, str]:
    """``cardrenew renew --pin-stdin --yes --json`` on ``card``: (exit code, JSON output, stderr)."""
    from tui.cli import main

    # the real pcsc_backend, on the in-process card instead of a PC/SC reader
    monkeypatch.setattr("card.pcsc.choose_reader", lambda named=None: "Virtual card")
    monkeypatch.setattr("card.backend.pcsc_service", lambda name, *_, **__: CardService(lambda: card, lambda: True))
    monkeypatch.setattr("card.backend.build_issuer", lambda settings, *_, **__: issuer)
    monkeypatch.setattr("sys.stdin", io.StringIO(PIN + "\n"))
    code = main(["renew", "--pin-stdin", "--yes", "--json", *extra])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def slot_key(card: SoftPivCard, slot: Slot) -> object:
    return serialization.load_pem_private_key(card.state.keys[slot.hex].private_pem.encode(), None).public_key()


def assert_every_slot_matches_its_key(card: SoftPivCard) -> None:
    for slot in SLOTS:
        cert = PivSession(card).read_certificate(slot).certificate
        assert cert is not None and key_matches(cert, slot_key(card, slot)), f"slot {slot.hex}: certificate and key differ"


def audit_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def fault():  # type: ignore[no-untyped-def]
    """Install a ``card.atomic.WriteFault`` for one test (removed afterwards)."""
    installed: list[atomic.WriteFault] = []

    def _install(f: atomic.WriteFault) -> atomic.WriteFault:
        atomic.set_write_fault(f)
        installed.append(f)
        return f

    yield _install
    atomic.set_write_fault(None)


# -- preflight ----------------------------------------------------------------------------------
def _state_dir_is_a_file(sd: Path) -> None:
    sd.parent.mkdir(parents=True, exist_ok=True)
    sd.write_text("not a directory")


def _audit_log_is_a_directory(sd: Path) -> None:
    (sd / "audit.log").mkdir(parents=True)


def _audit_log_is_a_fifo(sd: Path) -> None:
    sd.mkdir(parents=True)
    os.mkfifo(sd / "audit.log")


@pytest.mark.parametrize("breakage, words", [
    (_state_dir_is_a_file, "in the way"),
    (_audit_log_is_a_directory, "is a directory, not a regular file"),
    (_audit_log_is_a_fifo, "is a fifo, not a regular file"),
])
def test_preflight_refuses_a_broken_state_directory_before_the_ca_is_asked(
        ca: LocalCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, breakage, words: str) -> None:  # type: ignore[no-untyped-def]
    card = new_card(ca, tmp_path)
    before = json.dumps(card.state.objects, sort_keys=True)
    breakage(state_dir())
    counting = CountingCA(ca)
    code, out, err = run_cli(monkeypatch, capsys, card, counting)
    assert code == 11 and out["error"]["code"] == "STATEFILE", out
    assert words in out["error"]["message"] and "nothing was changed" in out["error"]["message"]
    assert out["error"]["next_step"] and "Traceback" not in err
    assert counting.asked == []  # no one-time grant spent
    assert json.dumps(card.state.objects, sort_keys=True) == before


@pytest.mark.parametrize("error, words", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied"),
                                          (errno.ENOSPC, "is full"), (errno.EIO, "input/output")])
def test_preflight_probe_write_failing_refuses_with_the_path_and_next_step(
        ca: LocalCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, fault, error: int, words: str) -> None:  # type: ignore[no-untyped-def]
    """A read-only state directory (one-time challenges must not be spent: F issue 11 item 5)."""
    card = new_card(ca, tmp_path)
    fault(atomic.WriteFault(at=1, error=error, only=("probe",)))
    counting = CountingCA(ca)
    code, out, _ = run_cli(monkeypatch, capsys, card, counting)
    assert code == 11 and out["error"]["code"] == "STATEFILE"
    assert words in out["error"]["message"] and str(state_dir()) in out["error"]["message"]
    assert "run `cardrenew renew` again" in out["error"]["next_step"]
    assert counting.asked == []


def test_preflight_wants_room_to_spare(ca: LocalCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    card = new_card(ca, tmp_path)
    monkeypatch.setattr(atomic, "free_space", lambda directory: (100 * 1024, 1000))
    counting = CountingCA(ca)
    code, out, _ = run_cli(monkeypatch, capsys, card, counting)
    assert code == 11 and "100 KiB free" in out["error"]["message"] and counting.asked == []


# -- file errors after the card changed ---------------------------------------------------------
def test_audit_log_not_writable_after_renewal_is_exit_13_and_the_record_is_written_next_run(
        ca: LocalCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, fault) -> None:  # type: ignore[no-untyped-def]
    """Field failure: audit log not writable → 9A renewed with no audit line, INTERNAL, exit 1."""
    card = new_card(ca, tmp_path)
    fault(atomic.WriteFault(at=1, error=errno.EACCES, only=("append",), under=state_dir()))
    code, out, err = run_cli(monkeypatch, capsys, card, ca)
    assert code == 13 and out["outcome"] == "completed_with_errors", out
    assert "INTERNAL" not in json.dumps(out) and "Traceback" not in err
    assert [s["renewed"] for s in out["slots"]] == [True, False]  # stopped before touching 9C
    assert "audit log" in out["message"] and "writable" in out["next_step"]
    assert_every_slot_matches_its_key(card)
    assert audit_lines(state_dir() / "audit.log") == []
    journal = json.loads(next(state_dir().glob("journal-*.json")).read_text())
    assert [r["outcome"] for r in journal["audit_pending"]] == ["renewed"]

    atomic.set_write_fault(None)  # the log is writable again
    code, out, _ = run_cli(monkeypatch, capsys, card, ca)
    assert code == 0, out
    lines = audit_lines(state_dir() / "audit.log")
    renewed = sorted(line["slot"] for line in lines if line["outcome"] == "renewed")
    assert renewed == ["9A", "9C"]
    assert [line.get("written_late") for line in lines if line["slot"] == "9A"] == [True]
    assert_every_slot_matches_its_key(card)


def test_disk_full_while_journalling_is_exit_13_and_leaves_no_slot_with_a_new_key_and_old_certificate(
        ca: LocalCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, fault) -> None:  # type: ignore[no-untyped-def]
    """Field failure: disk full while journalling → traceback, exit 1, 9A with the new key and the old
    certificate. Now: the slot in hand is finished (its journal kept in the fallback directory), exit 13."""
    card = new_card(ca, tmp_path)
    counter = fault(atomic.WriteFault(under=state_dir()))
    assert run_cli(monkeypatch, capsys, card, ca)[0] == 0
    writes = [op for op in counter.operations]
    generated = [i for i, (op, path) in enumerate(writes, 1) if op == "write" and "journal" in path]
    card = new_card(ca, tmp_path)
    for p in state_dir().iterdir():
        if p.is_file():
            p.unlink()
    fault(atomic.WriteFault(at=generated[2], error=errno.ENOSPC, under=state_dir()))  # the save right after GENERATE
    code, out, err = run_cli(monkeypatch, capsys, card, ca)
    assert code == 13 and "is full" in out["message"] and "Traceback" not in err, (out, err)
    assert_every_slot_matches_its_key(card)
    atomic.set_write_fault(None)
    code, out, _ = run_cli(monkeypatch, capsys, card, ca)
    assert code == 0, out
    assert sorted(a["slot"] for a in audit_lines(state_dir() / "audit.log") if a["outcome"] == "renewed") == ["9A", "9C"]


def test_without_a_fallback_directory_a_failed_save_after_generate_stops_and_resumes(
        ca: LocalCA, tmp_path: Path, fault) -> None:  # type: ignore[no-untyped-def]
    """No fallback: the engine stops where the journal on disk still describes the card (the
    resume generates again with the unused grant) — never an unexpected error."""
    card = new_card(ca, tmp_path)
    sd = tmp_path / "state"
    ctx = RenewalContext(Settings(state_dir=sd), ca, JournalStore(sd, fallback=None), AuditLog(sd / "audit.log"))
    fault(atomic.WriteFault(at=5, error=errno.ENOSPC, under=sd))  # probe, authorised, generating, generated ← here
    result = renew(PivSession(card), ctx, Secret(PIN))
    assert isinstance(result.error, StateFileError) and result.journal_kept
    atomic.set_write_fault(None)
    assert renew(PivSession(card), ctx, Secret(PIN)).ok
    assert_every_slot_matches_its_key(card)
    assert sorted(a["slot"] for a in audit_lines(sd / "audit.log") if a["outcome"] == "renewed") == ["9A", "9C"]


# -- the in-process I/O fault sweep (issue 11, "Done when") -------------------------------------
def _sweep(ca: LocalCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, errors: list[int],  # type: ignore[no-untyped-def]
           once: bool) -> list[str]:
    counter = atomic.WriteFault(under=state_dir())
    atomic.set_write_fault(counter)
    assert run_cli(monkeypatch, capsys, new_card(ca, tmp_path), ca)[0] == 0
    atomic.set_write_fault(None)
    total = counter.count
    assert total >= 14, counter.operations  # probe, authorised, 6 per slot, 2 audit lines, clear …
    report = []
    for error in errors:
        for n in range(1, total + 1):
            for p in list(state_dir().iterdir()) + list(Path(os.environ["XDG_RUNTIME_DIR"]).rglob("journal-*")):
                if p.is_file():
                    p.unlink()
            card = new_card(ca, tmp_path)
            old = {slot: PivSession(card).read_certificate(slot).certificate for slot in SLOTS}
            atomic.set_write_fault(atomic.WriteFault(at=n, error=error, once=once, under=state_dir()))
            try:
                code, out, err = run_cli(monkeypatch, capsys, card, ca)
            finally:
                atomic.set_write_fault(None)
            where = f"{errno.errorcode[error]} at write {n}/{total} ({counter.operations[n - 1][0]})"
            assert code in (0, 11, 13), f"{where}: exit {code} {out} {err}"
            assert "INTERNAL" not in json.dumps(out) and "Traceback" not in err, where
            assert_every_slot_matches_its_key(card)
            code2, out2, _ = run_cli(monkeypatch, capsys, card, ca)  # space is back
            assert code2 in (0, 10), f"{where}: second run exit {code2} {out2}"
            for slot in SLOTS:
                cert = PivSession(card).read_certificate(slot).certificate
                assert cert is not None and cert.serial_number != old[slot].serial_number, f"{where}: {slot.hex} not renewed"
            assert_every_slot_matches_its_key(card)
            renewed = sorted(a["slot"] for a in audit_lines(state_dir() / "audit.log") if a["outcome"] == "renewed")
            assert renewed == ["9A", "9C"], f"{where}: audit {renewed} {audit_lines(state_dir() / 'audit.log')} {out} {out2}"
            report.append(f"{where}: exit {code}, then {code2}")
    return report


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES, errno.EROFS], ids=errno.errorcode.get)
def test_io_fault_sweep_every_write_fails_in_turn_disk_stays_full(
        ca: LocalCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, error: int) -> None:  # type: ignore[no-untyped-def]
    """Every write of a full renewal fails in turn, and every later one too (the disk stays full,
    read-only, or not ours) until the run ends; then a second run finishes the card."""
    report = _sweep(ca, tmp_path, monkeypatch, capsys, [error], once=False)
    assert len(report) >= 14


def test_io_fault_sweep_one_write_fails(ca: LocalCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Only the N-th write fails (a transient error): the same promises."""
    _sweep(ca, tmp_path, monkeypatch, capsys, [errno.EIO], once=True)


# -- journals that are not journals ------------------------------------------------------------
def _write(text: bytes):  # type: ignore[no-untyped-def]
    return lambda path: path.write_bytes(text)


def _valid_journal_with(card_id: str, change) -> bytes:  # type: ignore[no-untyped-def]
    raw = json.loads(_a_journal(card_id))
    change(raw)
    return json.dumps(raw).encode()


def _a_journal(card_id: str) -> str:
    from card.journal import Journal, SlotJournal

    return Journal(card_id, slots={"9A": SlotJournal("9A")}).to_json()


BAD_JOURNALS = {
    "null": lambda path, cid: path.write_bytes(b"null"),
    "slots-list": lambda path, cid: path.write_bytes(json.dumps({"version": 1, "card_id": cid, "slots": []}).encode()),
    "invalid-utf8": lambda path, cid: path.write_bytes(b'{"card_id": "\xc3\x28"}'),
    "truncated": lambda path, cid: path.write_bytes(_a_journal(cid).encode()[:57]),
    "directory": lambda path, cid: path.mkdir(),
    "fifo": lambda path, cid: os.mkfifo(path),
    "symlink": lambda path, cid: path.symlink_to(path.parent.parent / "elsewhere.json"),
    "slot-ZZ": lambda path, cid: path.write_bytes(_valid_journal_with(cid, lambda r: r["slots"].update(
        {"ZZ": {"slot": "ZZ"}}))),
    "another-card": lambda path, cid: path.write_bytes(_a_journal("00" * 16).encode()),
    "deep-nesting": lambda path, cid: path.write_bytes(b"[" * 100_000),
}


@pytest.mark.parametrize("name", sorted(BAD_JOURNALS))
def test_a_journal_that_is_not_a_journal_is_set_aside_reported_and_the_run_goes_on(
        ca: LocalCA, tmp_path: Path, name: str) -> None:
    card = new_card(ca, tmp_path)
    sd = tmp_path / "state"
    sd.mkdir()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("precious")
    audit = AuditLog(sd / "audit.log")
    journals = JournalStore(sd, audit)
    settings = Settings(state_dir=sd)
    card_id = read_card(PivSession(card), settings).card_id
    assert card_id is not None
    path = journals.path_for(card_id)
    BAD_JOURNALS[name](path, card_id)

    summary: list = []
    reader = threading.Thread(target=lambda: summary.append(read_card(PivSession(card), settings, journals=journals)),
                              daemon=True)
    reader.start()
    reader.join(timeout=20)
    assert not reader.is_alive(), "reading the card hung on the journal"
    assert summary[0].pending_journal is None
    assert not os.path.lexists(path)
    aside = list(sd.glob(path.name + ".corrupt-*"))
    assert len(aside) == 1  # renamed, never deleted
    notices = journals.take_notices()
    assert len(notices) == 1 and "could not be used" in str(notices[0]) and "set aside" in str(notices[0])
    assert [a["outcome"] for a in audit_lines(sd / "audit.log")] == ["journal_set_aside"]
    assert elsewhere.read_text() == "precious"
    result = renew(PivSession(card), RenewalContext(settings, ca, journals, audit), Secret(PIN))
    assert result.ok, result


def test_status_and_renew_say_in_words_that_a_journal_was_set_aside(
        ca: LocalCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    card = new_card(ca, tmp_path)
    card_id = read_card(PivSession(card), Settings()).card_id
    assert card_id is not None
    state_dir().mkdir(parents=True, exist_ok=True)
    JournalStore(state_dir()).path_for(card_id).write_bytes(b"null")
    code, out, err = run_cli(monkeypatch, capsys, card, ca)
    assert code == 0, out
    assert "set aside" in err and "could not be used" in err


def test_a_journal_is_saved_and_loaded_back_the_same(tmp_path: Path) -> None:
    from card.journal import Journal, SlotJournal

    journal = Journal("AB" * 16, slots={"9A": SlotJournal("9A", step="authorised", grant={
        "grant_id": "g", "slot": "9A", "subject_der_hex": "3000", "old_certificate_fingerprint": "f",
        "expires": "2030-01-01T00:00:00+00:00"})}, audit_pending=[{"time": "2026-01-01T00:00:00+00:00", "x": 1}])
    store = JournalStore(tmp_path)
    store.save(journal)
    assert store.load(journal.card_id) == journal
    assert parse_journal(journal.to_json().encode()) == journal


# -- cardrenew audit ----------------------------------------------------------------------------
GOOD = json.dumps({"time": "2026-12-01T10:00:00+00:00", "event_id": "e1", "slot": "9A", "outcome": "renewed"})
GOOD2 = json.dumps({"time": "2026-12-02T10:00:00+00:00", "event_id": "e2", "slot": "9C", "outcome": "renewed"})


def _audit(capsys, *args: str) -> tuple[int, list[str], str]:  # type: ignore[no-untyped-def]
    from tui.cli import main

    code = main(["audit", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_audit_skips_torn_and_foreign_lines_with_a_warning(capsys) -> None:  # type: ignore[no-untyped-def]
    """Field failure: one torn line made `cardrenew audit` exit 1."""
    state_dir().mkdir(parents=True)
    (state_dir() / "audit.log").write_bytes(
        GOOD.encode() + b"\n" + GOOD2.encode()[:30] + b"\n[1, 2]\n\xff\xfe\n" + GOOD2.encode() + b"\n")
    code, out, err = _audit(capsys)
    assert code == 0
    assert [json.loads(line)["event_id"] for line in out] == ["e1", "e2"]
    assert "line 2 of" in err and "line 3 of" in err and "line 4 of" in err and "skipped" in err


def test_audit_n_0_prints_nothing_and_negative_n_is_a_usage_error(capsys) -> None:  # type: ignore[no-untyped-def]
    """Field failure: `audit -n 0` printed everything."""
    state_dir().mkdir(parents=True)
    (state_dir() / "audit.log").write_text(GOOD + "\n" + GOOD2 + "\n")
    assert _audit(capsys, "-n", "0")[:2] == (0, [])
    code, out, _ = _audit(capsys, "-n", "1")
    assert code == 0 and [json.loads(line)["event_id"] for line in out] == ["e2"]
    with pytest.raises(SystemExit) as exc:
        _audit(capsys, "-n", "-1")
    assert exc.value.code == 2 and "negative" in capsys.readouterr().err


def test_audit_says_in_words_when_the_log_is_empty_or_absent(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = _audit(capsys)
    assert (code, out) == (0, []) and "No audit log" in err and "yet" in err
    state_dir().mkdir(parents=True)
    (state_dir() / "audit.log").write_text("")
    code, out, err = _audit(capsys)
    assert (code, out) == (0, []) and "holds no records" in err and "empty" in err


def test_a_torn_last_line_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    (tmp_path / "audit.log").write_bytes(GOOD.encode() + b"\n" + GOOD2.encode()[:20])  # a torn append, no newline
    log.write(outcome="renewed", slot="9A")
    reading = log.read(None)
    assert [e.get("outcome") for e in reading.entries] == ["renewed", "renewed"] and len(reading.skipped) == 1


def test_demo_runs_are_audited_in_the_demos_own_state_directory(capsys) -> None:  # type: ignore[no-untyped-def]
    """Issue 12 item 9: demo runs were never audited (their state lived in a throw-away directory)."""
    from card.demo import DEMO_PIN, demo_backend, demo_state_dir

    from card.service import RenewalRequest

    backend, _ = demo_backend()
    result = backend.renew(RenewalRequest(Secret(DEMO_PIN))).result()
    backend.close()
    assert result.ok
    assert backend.audit.path == demo_state_dir() / "audit.log"
    for args in (["audit", "--demo"], ["--demo", "audit"]):
        from tui.cli import main

        assert main(args) == 0
        out = capsys.readouterr().out.splitlines()
        assert sorted(json.loads(line)["slot"] for line in out) == ["9A", "9C"]
    assert not (state_dir() / "audit.log").exists()  # never the real audit log


def test_a_bad_journal_that_cannot_be_set_aside_is_never_overwritten(ca: LocalCA, tmp_path: Path, fault) -> None:  # type: ignore[no-untyped-def]
    card = new_card(ca, tmp_path)
    sd = tmp_path / "state"
    sd.mkdir()
    audit = AuditLog(sd / "audit.log")
    journals = JournalStore(sd, audit)
    card_id = read_card(PivSession(card), Settings(state_dir=sd)).card_id
    assert card_id is not None
    journals.path_for(card_id).write_bytes(b"null")
    fault(atomic.WriteFault(at=1, error=errno.EACCES, only=("rename",)))
    counting = CountingCA(ca)
    with pytest.raises(StateFileError, match="cannot be set aside"):
        renew(PivSession(card), RenewalContext(Settings(state_dir=sd), counting, journals, audit), Secret(PIN))
    assert journals.path_for(card_id).read_bytes() == b"null" and counting.asked == []
