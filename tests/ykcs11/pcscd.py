"""Yubico's libykcs11 over our software PIV card: a pcscd of our own whose vpcd reader is named
"Yubico YubiKey vpcd", and the emulator served on its port.

Why a pcscd of our own: ykcs11 2.2.0 lists only readers whose name contains "Yubico", and pcscd
takes reader names from its reader.conf (``pcscd -c FILE``: the vpcd entry's ``FRIENDLYNAME``;
``DEVICENAME /dev/null:0xPORT`` is the vpcd port). pcscd 1.9.9 creates and checks its socket at
the compiled-in ``/run/pcscd/pcscd.comm`` whatever ``PCSCLITE_CSOCK_NAME`` says (measured: with the
CI's pcscd running, a second one refuses to start, "file /run/pcscd/pcscd.comm already exists";
alone, it still listens at /run/pcscd). So it runs in a mount namespace of its own
(``unshare --mount``, root) where a directory of ours is bind-mounted over ``/run/pcscd``: its
socket is ``<dir>/pcscd.comm`` for everyone else, and the CI's pcscd (or a colleague's inside
``isolated.sh``) is untouched. Clients reach it with ``PCSCLITE_CSOCK_NAME`` set in *their*
environment only: libpcsclite keeps the name for the life of a process, so it is never set in
the pytest process (every later pcscd test would talk to this pcscd) — ykcs11, OpenSC and
cardrenew run here as child processes (:meth:`YkPcscd.run`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest


YKCS11 = "/usr/lib/x86_64-linux-gnu/libykcs11.so"
OPENSC_PKCS11 = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
READER_NAME = "Yubico YubiKey vpcd"
READER = f"{READER_NAME} 00 00"
"""pcscd appends the slot: the emulator on the entry's first port is "… 00 00"."""
FIRST_PORT = 35979
"""Where the search for two free vpcd ports starts (the default vpcd uses 35963/35964)."""
SO_PIN = "010203040506070801020304050607080102030405060708"
"""ykcs11's SO PIN is the 3DES management key in hex (the emulator's well-known default)."""
PIN = "123456"
CARDRENEW = [sys.executable, "-m", "tui"]

_PRESENCE = """
import sys, time
from card import pcsc
want, deadline = sys.argv[1] == "1", time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        if dict(pcsc.list_readers()).get(sys.argv[3], False) == want:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.05)
sys.exit(1)
"""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_port_pair() -> int:
    for port in range(FIRST_PORT, FIRST_PORT + 200, 2):
        if _port_free(port) and _port_free(port + 1):
            return port
    pytest.fail(f"no two free TCP ports from {FIRST_PORT} for the ykcs11 pcscd's vpcd reader")


def stop_process(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """SIGTERM a process this module started, by PID (SIGKILL after 10 s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class YkPcscd:
    """The private pcscd: its socket, its vpcd port, and how to run a client against it."""

    directory: Path
    port: int
    proc: subprocess.Popen  # type: ignore[type-arg]
    log: Path

    @property
    def socket(self) -> Path:
        return self.directory / "run" / "pcscd.comm"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a child that talks to this pcscd (never the pytest process's own)."""
        return dict(os.environ, PCSCLITE_CSOCK_NAME=str(self.socket), **extra)

    def run(self, args: list[str], *, timeout: float = 120, check: bool = False, stdin: str | None = None,
            cwd: Path | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """Run a PC/SC client (pkcs11-tool, pkcs15-tool, cardrenew …) in a child process on this pcscd."""
        return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout, check=check,
                              env=self.env(**extra_env), cwd=cwd)

    def wait_card(self, present: bool, timeout_s: float = 30) -> None:
        """Wait until pcscd shows (or no longer shows) a card in :data:`READER` (a child asks)."""
        done = self.run([sys.executable, "-c", _PRESENCE, "1" if present else "0", str(timeout_s), READER],
                        timeout=timeout_s + 30)
        assert done.returncode == 0, f"{READER} did not show card present={present}; pcscd log: {self.tail()}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def stop(self) -> None:
        """Stop this pcscd (by PID) and remove its directory."""
        stop_process(self.proc)
        shutil.rmtree(self.directory, ignore_errors=True)


def _requirements() -> None:
    missing = [p for p in (YKCS11, VPCD_DRIVER) if not Path(p).exists()]
    missing += [tool for tool in ("pcscd", "unshare", "mount", "pkcs11-tool", "pkcs15-tool") if not shutil.which(tool)]
    if missing:
        pytest.fail(f"ykcs11 tests need {', '.join(missing)}: run scripts/setup.sh (ykcs11, pcscd, vsmartcard-vpcd, "
                    "opensc, util-linux)")
    if os.geteuid() != 0:
        pytest.fail("ykcs11 tests start a pcscd in a mount namespace of its own (unshare --mount): run them as root, "
                    "as .ci/run and shared/tools/isolated.sh do")


def start_pcscd() -> YkPcscd:
    """Start a pcscd with one vpcd entry named :data:`READER_NAME` on two free ports, its socket
    in a temporary directory (short: a Unix socket path has at most 107 bytes).

    Fails the test when a requirement is missing or pcscd does not come up."""
    _requirements()
    directory = Path(tempfile.mkdtemp(prefix="cardrenew-yk-"))
    (directory / "run").mkdir()
    port = _free_port_pair()
    conf = directory / "reader.conf"
    conf.write_text(f'FRIENDLYNAME "{READER_NAME}"\nDEVICENAME /dev/null:0x{port:04X}\n'
                    f"LIBPATH {VPCD_DRIVER}\nCHANNELID 0x{port:04X}\n")
    log = directory / "pcscd.log"
    script = 'mkdir -p /run/pcscd && mount --bind "$1" /run/pcscd && exec pcscd --foreground -c "$2"'
    with log.open("wb") as out:
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "yk-pcscd",
                                 str(directory / "run"), str(conf)], stdout=out, stderr=subprocess.STDOUT)
    pcscd = YkPcscd(directory, port, proc, log)
    deadline = time.monotonic() + 30  # a hang detector: a loaded CI host is slow, not stuck
    while not (_port_open(port) and pcscd.socket.exists()):
        if time.monotonic() > deadline or proc.poll() is not None:
            said = pcscd.tail()  # before stop() removes its directory
            pcscd.stop()
            pytest.fail(f"the ykcs11 pcscd did not start (exit {proc.poll()}): {said}")
        time.sleep(0.05)
    return pcscd


@dataclass
class YkCard:
    """``cardrenew emulator serve`` of one card state on the ykcs11 pcscd's reader."""

    pcscd: YkPcscd
    state: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None  # type: ignore[type-arg]

    def start(self) -> YkCard:
        """Serve the card and wait until pcscd shows it. After a pull in the middle of a command, the
        vpcd driver sometimes misses the card's first connection ("Card not transacted", seen in CI
        on 2 of 12 sweep points): the holder then takes the card out and puts it in once more."""
        for attempt in (1, 2):
            self.pcscd.wait_card(False, timeout_s=5)
            self.proc = subprocess.Popen(CARDRENEW + ["emulator", "serve", str(self.state), "--vpcd",
                                                      f"127.0.0.1:{self.pcscd.port}", *self.extra],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                self.pcscd.wait_card(True, timeout_s=20 if attempt == 1 else 30)
                return self
            except AssertionError:
                if attempt == 2:
                    raise
                print(f"ykcs11 fixture: the card did not show in {READER}; out once more and in again",
                      file=sys.stderr)
                stop_process(self.proc)  # out once more, then in again
                self.proc = None
                time.sleep(1.0)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            running = self.proc.poll() is None
            stop_process(self.proc)
            self.proc = None
            if running:
                self.pcscd.wait_card(False)
