"""Secrets through real pcscd with the real CLI (issue 12 items 7 and 8):

- the ``-vv`` APDU trace of a renewal with a PIN-protected management key (``5FC109``) holds no
  byte of that key, nor the PIN, in any spelling the trace uses; neither does the state directory;
- a ``renew`` waiting while another program holds the card (as the TUI does) ends on SIGTERM or
  SIGINT with 128+signal instead of waiting for the card (it ignored SIGTERM for 32 s).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from card.mgmtkey import encode_pin_protected
from card.secret import Secret
from tests.integration.conftest import CARDRENEW, READER
from tests.leaks import leaks

PIN = "123456"
# Digits no ASCII time in a certificate (YYMMDDHHMMSSZ, YYYYMMDDHHMMSSZ) can spell: "97" is no month,
# day, hour, minute or second, and "79" neither, so the check cannot meet a notBefore by chance.
TIMELESS_PIN = "97979797"


def found_in(blob: bytes, secret: bytes) -> list[str]:
    return leaks(blob, secret)


def files_holding(root: Path, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and found_in(p.read_bytes(), secret)]


def env_for(workdir: Path) -> dict[str, str]:
    return dict(os.environ, CARDRENEW_CONFIG=str(workdir / "config.toml"), XDG_STATE_HOME=str(workdir / "xdg-state"),
                XDG_DATA_HOME=str(workdir / "xdg-data"))


def test_vv_trace_of_a_renewal_with_a_pin_protected_management_key_holds_no_byte_of_it(
        serve_card, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    key = os.urandom(24)
    card = serve_card(key_type="ECCP256", create_extra=["--pin", TIMELESS_PIN])
    card.stop()  # give the card its own PIN-protected key, then serve it again
    state = json.loads(card.state.read_text())
    state["management_key"] = key.hex().upper()
    state["management_key_is_default"] = False
    state["objects"]["5FC109"] = encode_pin_protected(Secret(key)).hex().upper()
    card.state.write_text(json.dumps(state))
    from tests.integration.conftest import ServedCard

    served = ServedCard(card.state)
    try:
        config = workdir / "config.toml"
        config.write_text(config.read_text().replace('source = "default"', 'source = "pin-protected"'))
        out = subprocess.run(CARDRENEW + ["-vv", "renew", "--reader", READER, "--pin-stdin", "--yes", "--json"],
                             input=(TIMELESS_PIN + "\n").encode(), capture_output=True, env=env_for(workdir),
                             cwd=workdir, timeout=180)
    finally:
        served.stop()
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-3000:]
    assert json.loads(out.stdout)["outcome"] == "renewed"
    trace = out.stderr
    assert b"TRAFFIC" in trace and b"5C 03 5F C1 09" in trace  # the object was read, under the trace
    assert found_in(trace + out.stdout, key) == []
    assert found_in(trace + out.stdout, TIMELESS_PIN.encode()) == []
    assert files_holding(workdir / "xdg-state", key) == []
    assert files_holding(workdir / "xdg-state", TIMELESS_PIN.encode()) == []


HOLDER = r"""
import sys, time
from smartcard import scard
rc, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
rc, card, proto = scard.SCardConnect(ctx, sys.argv[1], scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T1 | scard.SCARD_PROTOCOL_T0)
assert rc == 0, rc
assert scard.SCardBeginTransaction(card) == 0
print("held", flush=True)
time.sleep(float(sys.argv[2]))
scard.SCardEndTransaction(card, scard.SCARD_LEAVE_CARD)
"""


def threads_of(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_renew_waiting_for_a_card_another_program_holds_ends_on_a_signal(
        serve_card, workdir: Path, sig: signal.Signals) -> None:  # type: ignore[no-untyped-def]
    serve_card(key_type="ECCP256")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, READER, "60"], stdout=subprocess.PIPE, text=True)
    renew = None
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        renew = subprocess.Popen(CARDRENEW + ["renew", "--reader", READER, "--pin-stdin", "--yes"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=env_for(workdir), cwd=workdir)
        assert renew.stdin is not None
        renew.stdin.write((PIN + "\n").encode())
        renew.stdin.close()
        renew.stdin = None  # written and closed: communicate() below only reads
        # Waiting for the card: the card thread and the thread that waits on pcscd both exist.
        deadline = time.monotonic() + 60
        while threads_of(renew.pid) < 3 and renew.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert renew.poll() is None, renew.communicate()
        renew.send_signal(sig)
        try:
            out, err = renew.communicate(timeout=30)  # the holder keeps the card for 60 s
        except subprocess.TimeoutExpired:
            pytest.fail(f"renew ignored {sig.name} while waiting for the card")
        text = err.decode(errors="replace")
        assert renew.returncode == 128 + sig, text
        assert "stopped while waiting for the card" in text, text
        assert PIN not in text + out.decode(errors="replace")
    finally:
        for proc in (renew, holder):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    status = subprocess.run(CARDRENEW + ["status", "--reader", READER, "--json"], capture_output=True, text=True,
                            env=env_for(workdir), cwd=workdir, timeout=60)
    assert json.loads(status.stdout)["update"] == "available"  # nothing was changed on the card


def test_a_pin_on_stdin_that_is_not_text_is_refused_without_a_try(serve_card, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    """``--pin-stdin`` reads bytes (a byte at a time, into the Secret): a Latin-1 byte is a PIN-format
    error (exit 4, no APDU), not a decoding crash."""
    serve_card(key_type="ECCP256")
    out = subprocess.run(CARDRENEW + ["renew", "--reader", READER, "--pin-stdin", "--yes"], input=b"12345\xe9\n",
                         capture_output=True, env=env_for(workdir), cwd=workdir, timeout=120)
    assert out.returncode == 4, out.stderr
    assert b"not valid text" in out.stderr and b"No try was used" in out.stderr
    status = subprocess.run(CARDRENEW + ["status", "--reader", READER, "--json"], capture_output=True, text=True,
                            env=env_for(workdir), cwd=workdir, timeout=60)
    assert json.loads(status.stdout)["pin_retries"] == 3
