"""The I/O fault sweep through pcscd (issue 11, "Done when"): the real ``cardrenew renew`` process
renews an emulator card served through vpcd while every file write of the renewal fails in turn.

The fault comes from ``card.atomic``'s test-only switch (``CARDRENEW_TEST_WRITE_FAULT=N:ERRNO``,
scoped to the state directory with ``CARDRENEW_TEST_WRITE_FAULT_UNDER``): the N-th write and every
later one fail with ``ENOSPC``, ``EACCES`` or ``EROFS`` until the process ends, as a full, read-only
or foreign state directory would. A clean reference run (``CARDRENEW_TEST_WRITE_LOG``) counts the
writes. For each N: the faulted run ends with a documented exit code (never 1, never a traceback),
every slot of the card holds a certificate matching its key (the emulator's own state); then space
comes back and a second run finishes: OpenSC (``pkcs15-tool`` read, ``pkcs11-tool`` signature)
judges both slots renewed, and the audit log holds exactly one "renewed" line per slot.

Plus the state directory on a real read-only and a real too-small tmpfs (``unshare --mount``, so
nothing outside the test process sees the mount): refused by preflight, exit 11, card unchanged.

Marked ``sweep`` (a few minutes); needs root (for the mounts) and pcscd with vpcd.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from card.emulator.card import SoftPivCard
from card.emulator.create import create_card_state
from card.emulator.state import CardState
from card.enrollment.local import LocalCA
from card.piv import KeyType
from tests.integration.conftest import CARDRENEW, READER
from tests.integration.test_sweeps import (
    PIN,
    SLOTS,
    ServedCard,
    opensc_slot,
    slot_state,
    wait_until_reader_free,
)

pytestmark = [pytest.mark.sweep, pytest.mark.pcscd]

KEY_TYPE, MECHANISM = "ECCP256", "ECDSA-SHA256"
ERRORS = ["ENOSPC", "EACCES", "EROFS"]


def _renew(workdir: Path, run: Path, *, fault: str | None = None, log: Path | None = None,
           wrapper: list[str] | None = None) -> tuple[int, dict, str]:
    """``cardrenew renew --pin-stdin --yes --json`` with its own state and runtime directories."""
    state_home, runtime = run / "state", run / "runtime"
    state_home.mkdir(parents=True, exist_ok=True)
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, CARDRENEW_CONFIG=str(workdir / "config.toml"), XDG_STATE_HOME=str(state_home),
               XDG_RUNTIME_DIR=str(runtime))
    for name in ("CARDRENEW_TEST_WRITE_FAULT", "CARDRENEW_TEST_WRITE_FAULT_UNDER", "CARDRENEW_TEST_WRITE_LOG"):
        env.pop(name, None)
    if fault:
        env["CARDRENEW_TEST_WRITE_FAULT"] = fault
        env["CARDRENEW_TEST_WRITE_FAULT_UNDER"] = str(state_home / "cardrenew")
    if log:
        env["CARDRENEW_TEST_WRITE_LOG"] = str(log)
        env["CARDRENEW_TEST_WRITE_FAULT_UNDER"] = str(state_home / "cardrenew")
    cmd = (wrapper or []) + CARDRENEW + ["renew", "--reader", READER, "--pin-stdin", "--yes", "--json"]
    proc = subprocess.run(cmd, input=PIN + "\n", capture_output=True, text=True, env=env, cwd=workdir, timeout=180)
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        out = {"unparsed stdout": proc.stdout}
    return proc.returncode, out, proc.stderr


def _audit_renewed(run: Path) -> list[str]:
    path = run / "state" / "cardrenew" / "audit.log"
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(line["slot"] for line in lines if line.get("outcome") == "renewed")


class Card:
    """A fresh copy of one due card (same keys and certificates each time), served through vpcd."""

    def __init__(self, workdir: Path, base: CardState, name: str) -> None:
        self.path = workdir / f"{name}.json"
        base.save(self.path)
        self.served = ServedCard(SoftPivCard(CardState.load(self.path), self.path))

    def state(self) -> CardState:
        return self.served.card.state

    def stop(self) -> None:
        self.served.stop()


@pytest.fixture
def sweep_setup(pcscd: None, workdir: Path):  # type: ignore[no-untyped-def]
    wait_until_reader_free()
    ca = LocalCA(workdir / "ca")
    base = create_card_state(ca, expires_in_days=30, key_type=KeyType[KEY_TYPE])
    old_serials = {}
    for slot in SLOTS:
        from card.certificates import decode_certificate_object

        cert = decode_certificate_object(bytes.fromhex(base.objects[slot.object_id.hex().upper()]))
        assert cert is not None
        old_serials[slot] = cert.serial_number
    return ca, base, old_serials


def test_every_write_of_a_renewal_fails_in_turn_through_pcscd(sweep_setup, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    ca, base, old_serials = sweep_setup
    started = time.monotonic()
    # the reference run: how many writes a renewal makes
    card = Card(workdir, base, "reference")
    log = workdir / "writes.log"
    try:
        code, out, err = _renew(workdir, workdir / "reference", log=log)
    finally:
        card.stop()
    assert code == 0, (out, err)
    writes = log.read_text().splitlines()
    total = len(writes)
    assert total >= 14, writes
    rows = []
    for error in ERRORS:
        for n in range(1, total + 1):
            run = workdir / f"run-{error}-{n}"
            card = Card(workdir, base, f"card-{error}-{n}")
            try:
                code, out, err = _renew(workdir, run, fault=f"{n}:{error}")
                where = f"{error} at write {n}/{total} ({writes[n - 1].split()[1]})"
                assert code in (0, 11, 13), f"{where}: exit {code} {out} {err}"
                assert "Traceback" not in err and "INTERNAL" not in json.dumps(out), f"{where}: {out} {err}"
                after_fault = {slot: slot_state(card.state(), slot, old_serials) for slot in SLOTS}
                assert "MISMATCH" not in after_fault.values(), f"{where}: {after_fault}"
                code2, out2, err2 = _renew(workdir, run)  # space is back
                assert code2 in (0, 10), f"{where}: second run exit {code2} {out2} {err2}"
                for slot in SLOTS:
                    cert = opensc_slot(workdir, slot, MECHANISM, ca.cert)
                    assert cert.serial_number != old_serials[slot], f"{where}: slot {slot.hex} not renewed"
                assert _audit_renewed(run) == ["9A", "9C"], f"{where}: audit {_audit_renewed(run)}"
                rows.append(f"{where:40} exit {code:>2} ({','.join(after_fault[s] for s in SLOTS)}) then {code2}")
            finally:
                card.stop()
            shutil.rmtree(run, ignore_errors=True)
    print(f"\nI/O fault sweep through pcscd: {total} writes x {len(ERRORS)} errors, "
          f"{time.monotonic() - started:.0f} s\n" + "\n".join(rows), flush=True)


def _in_own_mount_namespace(options: str, target: Path) -> list[str]:
    """A command prefix that runs the program with a tmpfs (``options``) mounted over ``target``
    in a mount namespace of its own (nothing outside sees the mount)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to mount a tmpfs")
    return ["unshare", "--mount", "sh", "-c", f'mount -t tmpfs -o {options} none "$0" && exec "$@"', str(target)]


@pytest.mark.parametrize("options, words", [("ro,size=4m", "read-only"), ("size=64k", "KiB free")])
def test_state_directory_on_a_read_only_or_full_tmpfs_is_refused_before_the_ca(  # type: ignore[no-untyped-def]
        sweep_setup, workdir: Path, options: str, words: str) -> None:
    ca, base, old_serials = sweep_setup
    run = workdir / "tmpfs-run"
    target = run / "state" / "cardrenew"
    target.mkdir(parents=True)
    card = Card(workdir, base, "tmpfs-card")
    try:
        before = json.dumps(card.state().objects, sort_keys=True)
        grants_before = _grants(workdir)
        code, out, err = _renew(workdir, run, wrapper=_in_own_mount_namespace(options, target))
        assert code == 11 and out["error"]["code"] == "STATEFILE", (out, err)
        assert words in out["error"]["message"] and str(target) in out["error"]["message"]
        assert json.dumps(card.state().objects, sort_keys=True) == before
        assert _grants(workdir) == grants_before  # the CA was asked for nothing
        # the renewal works once the directory is writable again
        code, out, err = _renew(workdir, run)
        assert code == 0, (out, err)
        assert all(slot_state(card.state(), slot, old_serials) == "new" for slot in SLOTS)
    finally:
        card.stop()


def _grants(workdir: Path) -> int:
    """How many renewal grants the embedded CA's ledger holds."""
    import sqlite3

    path = workdir / "ca" / "ledger.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM grants").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
