"""State directories stay apart (break-it report, fix round): a journal kept in the per-user
fallback directory belongs to the state directory it came from, and every directory we create
for state is 0700."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from card import atomic
from card.errors import StateFileError
from card.journal import AuditLog, Journal, JournalStore, SlotJournal

CARD = "A1" * 16


@pytest.fixture
def no_fault() -> Iterator[None]:
    yield
    atomic.set_write_fault(None)


def _journal() -> Journal:
    return Journal(CARD, slots={"9A": SlotJournal("9A", step="generated")})


def test_a_fallback_journal_is_only_taken_by_its_own_state_directory(tmp_path: Path, no_fault: None) -> None:
    root = tmp_path / "runtime"  # the shared per-user fallback ($XDG_RUNTIME_DIR/cardrenew)
    a, b = tmp_path / "A", tmp_path / "B"
    store_a = JournalStore(a, AuditLog(a / "audit.log"), fallback=root)
    atomic.set_write_fault(atomic.WriteFault(at=1, error=errno.EROFS, under=a))  # A turns read-only
    with pytest.raises(StateFileError) as exc:
        store_a.save(_journal())
    kept = exc.value.kept_at
    assert kept is not None and kept.is_file() and str(kept) in str(exc.value)
    atomic.set_write_fault(None)

    store_b = JournalStore(b, AuditLog(b / "audit.log"), fallback=root)
    assert store_b.load(CARD) is None  # B never sees A's journal …
    assert kept not in store_b.journal_files()
    store_b.save(Journal(CARD))  # … and B's own save never removes it
    store_b.clear(CARD)
    assert kept.is_file()

    again = JournalStore(a, AuditLog(a / "audit.log"), fallback=root)  # A's next run resumes it
    loaded = again.load(CARD)
    assert loaded is not None and loaded.slots["9A"].step == "generated"
    assert kept in again.journal_files()


def test_a_fallback_subdirectory_recording_another_state_directory_is_not_used(tmp_path: Path) -> None:
    root, a = tmp_path / "runtime", tmp_path / "A"
    store = JournalStore(a, fallback=root)
    assert store.fallback is not None
    atomic.make_directory(store.fallback, 0o700)
    (store.fallback / "state-directory").write_text(str(tmp_path / "other") + "\n")
    (store.fallback / JournalStore.file_name(CARD)).write_text(_journal().to_json())
    assert store.load(CARD) is None


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_make_directory_creates_every_missing_parent_0700(tmp_path: Path) -> None:
    target = tmp_path / "state" / "cardrenew" / "demo"
    old = os.umask(0o022)
    try:
        atomic.make_directory(target)
    finally:
        os.umask(old)
    assert [_mode(p) for p in (tmp_path / "state", tmp_path / "state" / "cardrenew", target)] == [0o700] * 3


def test_the_demo_audit_log_leaves_the_real_state_directory_0700(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from card.demo import demo_state_dir

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    old = os.umask(0o022)
    try:
        AuditLog(demo_state_dir() / "audit.log").write(outcome="demo_started")
    finally:
        os.umask(old)
    real_state = tmp_path / "xdg-state" / "cardrenew"
    assert demo_state_dir().parent == real_state
    assert _mode(real_state) == 0o700 and _mode(demo_state_dir()) == 0o700
