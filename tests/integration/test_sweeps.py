"""Fault sweeps through real pcscd + vpcd (issue 4, "Done when" 1 and 2).

For every APDU index of a full two-slot ``cardrenew renew`` (RSA-2048 and ECC P-256), the card is
pulled at that index (pull sweep) or the ``renew`` process is killed with SIGKILL when the card
receives that command (kill sweep). The card is then re-inserted (pull) and ``renew`` is run
again (the resume). After the fault the emulator's own state must show every slot either
untouched, fully renewed, or mid-renewal *with a journal* to resume from; after the resume OpenSC
must read a renewed certificate from both slots (``pkcs15-tool``, chaining to the CA, valid now)
whose public key verifies a signature made by the slot's key (``pkcs11-tool``).

The card is served in-process (a thread speaking the vpcd protocol) so the test sees each command
as it arrives: the pull is the emulator's ``drop_after_apdus`` fault, the kill happens in a hook
that runs before command ``i`` is processed (so the process never sees answer ``i``; the card
completes it, as a real card completes a command already sent).

Slow (a few hundred ``renew`` runs): marked ``sweep``, excluded from the default run, run by
``.ci/run`` with ``-m sweep -s`` so the tables print.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509

from card.certificates import decode_certificate_object, key_matches, verify_signature
from card.emulator.card import CardFaults, SoftPivCard
from card.emulator.create import create_card_state
from card.emulator.state import CardState
from card.emulator.vpcd import serve_connection
from card.enrollment.local import LocalCA
from card.piv import KeyType, Slot
from tests.integration.conftest import CARDRENEW, READER, VPCD_PORT

OPENSC_PKCS11 = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
PIN = "123456"
SLOTS = (Slot.AUTHENTICATION, Slot.SIGNATURE)
KEY_IDS = {Slot.AUTHENTICATION: "01", Slot.SIGNATURE: "02"}
KEY_TYPES = [("RSA2048", "SHA256-RSA-PKCS"), ("ECCP256", "ECDSA-SHA256")]
READER_FREE_WAIT_S = float(os.environ.get("CARDRENEW_TEST_READER_WAIT_S", "900"))
PCSCD_POLL_S = 0.6
"""Longer than pcscd's reader poll period (PCSCLITE_STATUS_POLL_RATE, 400 ms)."""
ONLY = os.environ.get("CARDRENEW_SWEEP_ONLY", "")
"""For debugging one spot: e.g. ``40-45,60`` sweeps only those indexes (default: every index)."""


def _selected(total: int) -> list[int]:
    if not ONLY:
        return list(range(total))
    chosen: set[int] = set()
    for part in ONLY.split(","):
        lo, _, hi = part.partition("-")
        chosen.update(range(int(lo), int(hi or lo) + 1))
    return sorted(i for i in chosen if i < total)

pytestmark = [pytest.mark.sweep, pytest.mark.pcscd]


# -- the card, served in-process ------------------------------------------------------------
def _reader_present() -> bool | None:
    from card import pcsc

    try:
        return dict(pcsc.list_readers()).get(READER)
    except Exception:  # noqa: BLE001 - pcscd busy or starting
        return None


def wait_reader(present: bool, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _reader_present() is present:
            return
        time.sleep(0.02)
    raise AssertionError(f"reader {READER} did not show card present={present} within {timeout_s:.0f} s")


class ServedCard:
    """A :class:`SoftPivCard` served to vpcd from a thread of the test process.

    After a fault-injected pull the card stays out until :meth:`reinsert`. ``before_apdu`` (if
    set) is called with the index of each command before the card processes it.
    """

    def __init__(self, card: SoftPivCard) -> None:
        self.card = card
        self.before_apdu: Callable[[int], None] | None = None
        self.received: list[bytes] = []
        """Every command that reached the card while present (the pulled one too)."""
        self._stop = threading.Event()
        self._reinsert = threading.Event()
        self._sock: socket.socket | None = None
        self._powered = threading.Event()
        self._dropped_at = 0.0
        power_on = card.power_on

        def powered() -> None:  # pcscd powers the card up when it sees it inserted
            self._powered.set()
            power_on()

        card.power_on = card.power_off = card.reset = powered  # type: ignore[method-assign]
        process = card.process_apdu

        def hooked(apdu: bytes) -> bytes:
            if card.present:
                self.received.append(apdu)
                if self.before_apdu is not None:
                    self.before_apdu(card.apdu_count)
            return process(apdu)

        card.process_apdu = hooked  # type: ignore[method-assign]
        wait_until_reader_free()
        self._thread = threading.Thread(target=self._serve, name="vpcd-card", daemon=True)
        self._thread.start()
        self._wait_inserted()
        wait_reader(True)

    def _wait_inserted(self) -> None:
        """Until pcscd has powered up *this* card (not another tester's on the same reader)."""
        # vpcd serves one card at a time: while another one is in the reader ours waits in line.
        if not self._powered.wait(READER_FREE_WAIT_S):
            self.stop()
            raise AssertionError(f"pcscd did not power up our card in {READER} (another card kept the reader)")

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self.card.present:
                if self._reinsert.wait(0.02):
                    self._reinsert.clear()
                    self.card.insert()
                continue
            try:
                sock = socket.create_connection(("127.0.0.1", VPCD_PORT), timeout=2)
            except OSError:
                self._stop.wait(0.1)
                continue
            self._sock = sock
            with sock:
                outcome = serve_connection(self.card, sock, self._stop)
            self._sock = None
            if outcome == "dropped":
                self._dropped_at = time.monotonic()
            if outcome == "closed":
                self._stop.wait(0.1)

    def reinsert(self) -> None:
        """Put a pulled card back once pcscd's reader poll (every 0.4 s) has seen it out.

        pcscd's own reader state is no guide here: a failed reset at the client's disconnect
        marks the reader empty although its poll has not run; a card back before the poll is
        never seen as re-inserted. So the card stays out for more than one poll period.
        """
        for _attempt in range(3):
            time.sleep(max(0.0, self._dropped_at + PCSCD_POLL_S - time.monotonic()))
            self._powered.clear()
            self._reinsert.set()
            self._wait_inserted()
            try:
                wait_reader(True, timeout_s=3)
                return
            except AssertionError:  # pcscd missed the pull: pull the card again
                self.card.remove()
                self._close_socket()
                self._dropped_at = time.monotonic()
        raise AssertionError(f"pcscd did not see the card re-inserted into {READER}")

    def _close_socket(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._close_socket()
        self._thread.join(timeout=5)
        wait_reader(False)


def wait_until_reader_free() -> None:
    """Another tester may hold the reader: wait (bounded) until it shows no card."""
    deadline = time.monotonic() + READER_FREE_WAIT_S
    while _reader_present() is not False:
        if time.monotonic() > deadline:
            pytest.fail(f"reader {READER} stayed busy (or unknown to pcscd) for {READER_FREE_WAIT_S:.0f} s")
        time.sleep(2)


# -- cardrenew and OpenSC ---------------------------------------------------------------------
def renew_cmd(workdir: Path, state_dir: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, CARDRENEW_CONFIG=str(workdir / "config.toml"), XDG_STATE_HOME=str(state_dir))
    return CARDRENEW + ["renew", "--reader", READER, "--pin-stdin", "--yes", "--json"], env


def start_renew(workdir: Path, state_dir: Path) -> subprocess.Popen[str]:
    cmd, env = renew_cmd(workdir, state_dir)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=workdir)
    assert proc.stdin is not None
    proc.stdin.write(PIN + "\n")
    proc.stdin.close()
    return proc


def finish(proc: subprocess.Popen[str], timeout_s: float = 120) -> tuple[int, str, str]:
    assert proc.stdout is not None and proc.stderr is not None
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return rc, proc.stdout.read(), proc.stderr.read()


def run_renew(workdir: Path, state_dir: Path) -> tuple[int, str, str]:
    return finish(start_renew(workdir, state_dir))


CONNECT_RETRIES: list[str] = []
"""OpenSC runs that could not connect to the card at first (retried; reported with the tables)."""


def _tool(*args: str) -> subprocess.CompletedProcess[bytes]:
    for _attempt in range(3):
        out = subprocess.run(list(args), capture_output=True, timeout=60)
        if out.returncode == 0 or b"Failed to connect to card" not in out.stderr + out.stdout:
            break
        # pcscd can still be settling the reader after the previous client's reset failed;
        # this is about reaching the card, not about what it holds: try again shortly.
        CONNECT_RETRIES.append(f"{args[0]} {' '.join(args[-2:])}: {out.stderr.decode(errors='replace').strip()}")
        time.sleep(0.5)
    assert out.returncode == 0, (args, out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace"))
    return out


def opensc_slot(workdir: Path, slot: Slot, mechanism: str, ca_cert: x509.Certificate) -> x509.Certificate:
    """The slot's certificate as read by pkcs15-tool (chains to the CA, valid now), after a
    pkcs11-tool signature by the slot's key verified with that certificate's public key."""
    key_id = KEY_IDS[slot]
    pem = _tool("pkcs15-tool", "--reader", READER, "--read-certificate", key_id).stdout
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(ca_cert)
    now = dt.datetime.now(dt.timezone.utc)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc, f"slot {slot.hex}: certificate not valid now"
    message = os.urandom(32)
    msg, sig = workdir / "msg.bin", workdir / "sig.bin"
    msg.write_bytes(message)
    sig.unlink(missing_ok=True)
    _tool("pkcs11-tool", "--module", OPENSC_PKCS11, "--slot-description", READER, "--login", "--pin", PIN,
          "--sign", "--id", key_id, "-m", mechanism, "--input-file", str(msg), "--output-file", str(sig),
          *(["--signature-format", "openssl"] if "ECDSA" in mechanism else []))
    assert verify_signature(cert.public_key(), sig.read_bytes(), message), \
        f"slot {slot.hex}: the pkcs11-tool signature does not verify with the certificate pkcs15-tool read"
    return cert


# -- what the card holds (the emulator's own state: ground truth, no APDU) -----------------
def slot_state(state: CardState, slot: Slot, old_serials: dict[Slot, int]) -> str:
    """``old`` / ``new`` (certificate matching the slot key), or ``MISMATCH`` (key ≠ certificate)."""
    from cryptography.hazmat.primitives import serialization

    value = state.objects.get(slot.object_id.hex().upper())
    cert = decode_certificate_object(bytes.fromhex(value)) if value else None
    key = state.keys.get(slot.hex)
    if cert is None or key is None:
        return "EMPTY"
    public = serialization.load_pem_private_key(key.private_pem.encode(), None).public_key()
    if not key_matches(cert, public):
        return "MISMATCH"
    return "old" if cert.serial_number == old_serials[slot] else "new"


def describe(apdu: bytes) -> str:
    """A short name for a command APDU (for the table)."""
    cla, ins, p2 = apdu[0], apdu[1], apdu[3]
    chained = "+" if cla & 0x10 else ""
    data = apdu[5:] if len(apdu) > 5 else b""
    if ins == 0xA4:
        return "SELECT"
    if ins == 0x20:
        return "VERIFY" if len(apdu) > 5 else "VERIFY?"  # no data: PIN tries query
    if ins == 0x87:
        return "AUTH 9B" if p2 == 0x9B else f"SIGN {p2:02X}{chained}"
    if ins == 0x47:
        return f"GENERATE {p2:02X}"
    if ins == 0xC0:
        return "GET RESP"
    if ins in (0xCB, 0xDB):
        tag = data[2:5].hex().upper() if data[:2] == b"\x5c\x03" else ""
        name = {"5FC105": "9A", "5FC10A": "9C", "5FC102": "CHUID"}.get(tag, tag)
        return ("GET DATA " if ins == 0xCB else "PUT DATA ") + (name or "…") + chained
    return f"INS {ins:02X}"


# -- the sweep ---------------------------------------------------------------------------
@dataclass
class Row:
    index: int
    command: str
    first: str
    after_fault: str
    journal: bool
    resume: str
    final: str


@dataclass
class Sweep:
    kind: str
    key_type: str
    mechanism: str
    workdir: Path
    base: CardState
    ca_cert: x509.Certificate
    old_serials: dict[Slot, int] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)

    def fresh_card(self) -> SoftPivCard:
        return SoftPivCard(CardState.from_json(self.base.to_json()), None, name="sweep card")

    def reference(self) -> int:
        """One unfaulted renewal: its command count."""
        served = ServedCard(self.fresh_card())
        try:
            rc, out, err = run_renew(self.workdir, self.workdir / "state-ref")
            assert rc == 0, out + err
            assert json.loads(out)["outcome"] == "renewed"
            total = served.card.apdu_count
            self.final_check()
        finally:
            served.stop()
        return total

    def final_check(self) -> None:
        for slot in SLOTS:
            cert = opensc_slot(self.workdir, slot, self.mechanism, self.ca_cert)
            assert cert.serial_number != self.old_serials[slot], f"slot {slot.hex}: still the old certificate"

    def run_index(self, index: int) -> Row:
        state_dir = self.workdir / f"state-{self.kind}-{index}"
        served = ServedCard(self.fresh_card())
        card = served.card
        try:
            if self.kind == "pull":
                card.faults = CardFaults(drop_after_apdus=index)
                rc, out, err = run_renew(self.workdir, state_dir)
                first = f"exit {rc}"
                faulted = not card.present
                card.faults = CardFaults()  # disarmed: a run shorter than index must not pull OpenSC's card
                if faulted:
                    served.reinsert()
            else:
                proc_box: list[subprocess.Popen[str]] = []
                ready, killed = threading.Event(), threading.Event()

                def kill_at(i: int) -> None:
                    if i == index and not killed.is_set():
                        ready.wait(10)
                        proc_box[0].send_signal(signal.SIGKILL)
                        proc_box[0].wait()
                        killed.set()

                served.before_apdu = kill_at
                proc_box.append(start_renew(self.workdir, state_dir))
                ready.set()
                rc, out, err = finish(proc_box[0])
                served.before_apdu = None
                faulted = killed.is_set()
                first = "killed" if faulted else f"exit {rc}"
                if faulted:
                    assert rc == -signal.SIGKILL, (rc, out, err)
            # The count can differ by one from run to run (certificate sizes vary, and with
            # them the number of chained / GET RESPONSE commands): name the command of this run.
            command = describe(served.received[index]) if len(served.received) > index else "(after the end)"
            if not faulted:  # the renewal ran to its end before index: nothing to resume
                assert rc == 0, out + err
            journal = any(state_dir.glob("cardrenew/journal-*.json"))
            after = {slot: slot_state(card.state, slot, self.old_serials) for slot in SLOTS}
            after_text = " ".join(after[s] for s in SLOTS)
            # Safety right after the fault: a slot whose key does not match its certificate is
            # only acceptable with a journal to resume from; without a journal the card is
            # either untouched or completely renewed.
            if "MISMATCH" in after.values() or "EMPTY" in after.values():
                assert journal, f"{self.kind} at {index} ({command}): card left {after_text} and no journal"
            if not journal:
                assert set(after.values()) in ({"old"}, {"new"}), \
                    f"{self.kind} at {index} ({command}): card left {after_text} without a journal"
            if faulted:
                rc2, out2, err2 = run_renew(self.workdir, state_dir)
                assert rc2 == 0, f"{self.kind} at {index} ({command}): resume failed: exit {rc2}\n{out2}\n{err2}"
                report = json.loads(out2)
                assert report["outcome"] == "renewed", out2
                resume = "resumed" if journal else "renewed"
            else:
                resume = "-"
            ends = {slot: slot_state(card.state, slot, self.old_serials) for slot in SLOTS}
            assert set(ends.values()) == {"new"}, f"{self.kind} at {index}: after resume the card holds {ends}"
            self.final_check()
            return Row(index, command, first if faulted else f"no fault ({first})", after_text, journal, resume,
                       "both renewed, OpenSC OK")
        finally:
            served.before_apdu = None
            served.stop()


def print_tables(sweep: Sweep, total: int, elapsed_s: float) -> None:
    title = (f"{sweep.kind} sweep, {sweep.key_type}: unfaulted renewal = {total} APDUs; {len(sweep.rows)} indexes "
             f"swept (0..{len(sweep.rows) - 1}), {elapsed_s:.0f} s")
    print(f"\n{title}\n" + "=" * len(title))
    print(f"{'idx':>4}  {'command':<16} {'first run':<9}  {'after fault (9A 9C)':<21} {'journal':<7}  {'then':<8} result")
    for r in sweep.rows:
        print(f"{r.index:>4}  {r.command:<16} {r.first:<9}  {r.after_fault:<21} {'yes' if r.journal else 'no':<7}  "
              f"{r.resume:<8} {r.final}")
    counts = collections.Counter((r.first, r.after_fault, r.journal, r.resume, r.final) for r in sweep.rows)
    print(f"\n{'indexes':>7}  {'first run':<9}  {'after fault (9A 9C)':<21} {'journal':<7}  {'then':<8} result")
    for (first, after, journal, resume, final), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{n:>7}  {first:<9}  {after:<21} {'yes' if journal else 'no':<7}  {resume:<8} {final}")
    print(f"{len(sweep.rows):>7}  total", flush=True)
    print(f"OpenSC connection retries: {len(CONNECT_RETRIES)}" + "".join(f"\n  {r}" for r in CONNECT_RETRIES) + "\n",
          flush=True)


@pytest.fixture
def reader_free(pcscd: None) -> Iterator[None]:
    wait_until_reader_free()
    yield


@pytest.mark.parametrize("kind", ["pull", "kill"])
@pytest.mark.parametrize("key_type,mechanism", KEY_TYPES)
def test_fault_at_every_apdu_index_resumes_to_both_renewed(reader_free: None, workdir: Path, kind: str,
                                                          key_type: str, mechanism: str) -> None:
    started = time.monotonic()
    ca = LocalCA(workdir / "ca")
    base = create_card_state(ca, key_type=KeyType[key_type])
    sweep = Sweep(kind, key_type, mechanism, workdir, base, ca.cert)
    probe = sweep.fresh_card()
    for slot in SLOTS:
        value = bytes.fromhex(probe.state.objects[slot.object_id.hex().upper()])
        cert = decode_certificate_object(value)
        assert cert is not None
        sweep.old_serials[slot] = cert.serial_number
    total = sweep.reference()
    assert total > 20, total
    indexes = _selected(total)
    CONNECT_RETRIES.clear()
    for index in indexes:
        try:
            sweep.rows.append(sweep.run_index(index))
        except BaseException:
            print_tables(sweep, total, time.monotonic() - started)
            print(f"FAILED at {kind} index {index}", flush=True)
            raise
    if not ONLY:  # a run may be a command longer than the reference: sweep on until one ends unfaulted
        while not sweep.rows[-1].first.startswith("no fault"):
            assert len(sweep.rows) < total + 5, "the renewal keeps growing: faulted at every index swept"
            sweep.rows.append(sweep.run_index(len(sweep.rows)))
    print_tables(sweep, total, time.monotonic() - started)
    assert [r.index for r in sweep.rows][: len(indexes)] == indexes
