"""Real PC/SC: pcscd (started here if it is not running) and our card served through vpcd."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

VPCD_PORT = int(os.environ.get("CARDRENEW_TEST_VPCD_PORT", "35963"))
"""vpcd port of the reader the tests use: 35963 is "Virtual PCD 00 00", 35964 "Virtual PCD 00 01"."""
READER = f"Virtual PCD 00 {VPCD_PORT - 35963:02d}"
CARDRENEW = [sys.executable, "-m", "tui"]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


STARTED_PCSCD: subprocess.Popen[bytes] | None = None
"""The pcscd this test session started (None: one was already running, and is never stopped here).
A test that restarts pcscd replaces it here, so that the session still stops the one running."""


VPCD_READERS_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "vpcd-readers.sh"
"""Writes pcscd's reader configuration for the tests: the two Debian vpcd readers and two more
("Second PCD 00 00" / "00 01" on 35965 / 35966) for the four-reader queue tests; .ci/run uses it too."""


def start_pcscd() -> subprocess.Popen[bytes]:
    """Start ``pcscd --foreground -c`` (four vpcd readers, :data:`VPCD_READERS_SCRIPT`) and wait for its
    vpcd port (fails the test if it does not open)."""
    conf = subprocess.run([str(VPCD_READERS_SCRIPT), tempfile.mkdtemp(prefix="cardrenew-readers-")], check=True,
                          capture_output=True, text=True).stdout.strip()
    proc = subprocess.Popen(["pcscd", "--foreground", "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not _port_open(35963):
        if time.monotonic() > deadline or proc.poll() is not None:
            pytest.fail("pcscd did not open the vpcd port 35963 (is vsmartcard-vpcd installed?)")
        time.sleep(0.1)
    return proc


def stop_pcscd(proc: subprocess.Popen[bytes]) -> None:
    """Stop a pcscd this session started, by its PID."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def pcscd() -> Iterator[None]:
    """A pcscd without --auto-exit (F21). Started (and later stopped, by PID) only if none runs."""
    global STARTED_PCSCD
    if shutil.which("pcscd") is None:
        pytest.fail("pcscd is not installed: run scripts/setup.sh (CI installs it in .ci/run)")
    if not _port_open(35963):
        STARTED_PCSCD = start_pcscd()
    yield
    if STARTED_PCSCD is not None:
        stop_pcscd(STARTED_PCSCD)
        STARTED_PCSCD = None


def reader_has_card(present: bool = True, timeout_s: float = 15) -> None:
    from card import pcsc

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if dict(pcsc.list_readers()).get(READER, False) == present:
                return
        except Exception:  # noqa: BLE001 - pcscd may still be starting
            pass
        time.sleep(0.1)
    raise AssertionError(f"reader {READER} did not show card present={present}")


def stop_process(proc: subprocess.Popen) -> bool:  # type: ignore[type-arg]
    """SIGTERM a process we started (then SIGKILL after 10 s); True if it was still running."""
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return True


class ServedCard:
    """``cardrenew emulator serve`` as a subprocess, stopped by PID."""

    def __init__(self, state: Path, extra: list[str] | None = None) -> None:
        self.state = state
        reader_has_card(False, timeout_s=5)  # another card on this reader would be renewed instead
        self.proc = subprocess.Popen(CARDRENEW + ["emulator", "serve", str(state), "--vpcd", f"127.0.0.1:{VPCD_PORT}",
                                                  *(extra or [])],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        reader_has_card(True)

    def stop(self) -> None:
        if stop_process(self.proc):
            reader_has_card(False)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    subprocess.run(CARDRENEW + ["ca", "init", str(tmp_path / "ca")], check=True, capture_output=True)
    (tmp_path / "config.toml").write_text(
        "[renewal]\nwindow_days = 90\n\n[issuer]\ntype = \"local\"\ndirectory = \"ca\"\n\n"
        "[management_key]\nsource = \"default\"\n")
    return tmp_path


@pytest.fixture
def serve_card(pcscd: None, workdir: Path) -> Iterator:  # type: ignore[type-arg]
    served: list[ServedCard] = []

    def _serve(expires_in_days: int = 30, key_type: str = "RSA2048", extra: list[str] | None = None,
               create_extra: list[str] | None = None) -> ServedCard:
        state = workdir / f"card{len(served)}.json"
        subprocess.run(CARDRENEW + ["emulator", "create", str(state), "--ca", str(workdir / "ca"),
                                    "--expires-in-days", str(expires_in_days), "--key-type", key_type,
                                    *(create_extra or [])],
                       check=True, capture_output=True)
        card = ServedCard(state, extra)
        served.append(card)
        return card

    yield _serve
    for card in reversed(served):
        card.stop()


def run_cardrenew(workdir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CARDRENEW_CONFIG=str(workdir / "config.toml"))
    if args and args[0] in ("status", "renew"):  # name the reader: a card in another reader must not matter
        args = (args[0], "--reader", READER, *args[1:])
    return subprocess.run(CARDRENEW + list(args), input=stdin, capture_output=True, text=True, env=env, timeout=120,
                          cwd=workdir)
