"""What the user reads about file faults (break-it report, fix round): each warning once per run,
the next step names where the journal really is, an audit log that is a FIFO is called so."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from card import atomic
from card.errors import StateFileError
from card.journal import Journal, JournalStore, SlotJournal
from tui.cli import main

CARD = "B2" * 16


def test_a_journal_kept_in_the_fallback_is_named_in_the_next_step(tmp_path: Path) -> None:
    state, root = tmp_path / "state", tmp_path / "runtime"
    store = JournalStore(state, fallback=root)
    atomic.set_write_fault(atomic.WriteFault(at=1, error=errno.ENOSPC, under=state))
    try:
        with pytest.raises(StateFileError) as exc:
            store.save(Journal(CARD, slots={"9A": SlotJournal("9A", step="generated")}))
    finally:
        atomic.set_write_fault(None)
    kept = exc.value.kept_at
    assert kept is not None and kept.is_file()
    step = exc.value.next_step or ""
    assert f"kept in {kept}" in step and f"kept in {state})" not in step


def test_an_audit_log_that_is_a_fifo_is_called_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    (tmp_path / "cardrenew").mkdir(mode=0o700)
    log = tmp_path / "cardrenew" / "audit.log"
    os.mkfifo(log)
    assert main(["audit"]) != 0
    err = capsys.readouterr().err
    assert f"{log} is a fifo, not a regular file" in err
    assert "could not be written" not in err and "cardrenew renew" not in err
    assert f"Move {log} out of the way" in err and "`cardrenew audit` again" in err


def test_the_same_warning_is_printed_once_per_run(tmp_path: Path) -> None:
    """The real process: a warning logged six times (a full disk: one per journal save) is shown once."""
    program = ("import logging, sys\n"
               "from tui import cli\nfrom tui.cli import status as status_command\n"
               "def status(args):\n"
               "    for _ in range(6):\n"
               "        logging.getLogger('card.journal').warning('the journal is kept in /dev/shm/x')\n"
               "    logging.getLogger('card.journal').warning('another warning')\n"
               "    return 0\n"
               "status_command.cmd_status = status\n"
               "sys.exit(cli.main(['status']))\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("the journal is kept in /dev/shm/x") == 1
    assert done.stderr.count("another warning") == 1
