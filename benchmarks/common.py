"""Shared helpers: private XDG dirs, a CA and cards, a tracing/latency transport, CA timing, vpcd."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PIN = "123456"
READERS = {35963: "Virtual PCD 00 00", 35964: "Virtual PCD 00 01", 35965: "Second PCD 00 00", 35966: "Second PCD 00 01"}
"""The vpcd readers of scripts/vpcd-readers.sh (the last two: the renewal queue's four-reader figure)."""

INS_NAMES = {0xA4: "SELECT", 0xCB: "GET DATA", 0xDB: "PUT DATA", 0x20: "VERIFY", 0x87: "GENERAL AUTHENTICATE",
             0x47: "GENERATE", 0xC0: "GET RESPONSE", 0x24: "CHANGE REFERENCE", 0x2C: "RESET RETRY",
             0xFD: "GET VERSION (YK)", 0xF8: "GET SERIAL (YK)", 0xF7: "GET METADATA (YK)", 0x01: "SET MGMKEY (YK)"}


def ins_name(ins: int) -> str:
    return INS_NAMES.get(ins, f"INS {ins:02X}")


def private_xdg() -> Path:
    """Point every XDG_*_HOME at a fresh temporary directory (nothing touches ~)."""
    base = Path(tempfile.mkdtemp(prefix="cardrenew-bench-"))
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):
        (base / name).mkdir(mode=0o700)
        os.environ[name] = str(base / name)
    os.environ.pop("CARDRENEW_CONFIG", None)
    os.environ["HOME"] = str(base / "home")  # yubico-piv-tool / OpenSC caches
    (base / "home").mkdir()
    return base


# -- latency model --------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyModel:
    """Seconds a real card and reader would add. Applied per APDU on the final block of a command.

    ``per_apdu_s`` every exchange (reader + T=1 transfer); the rest by what the command does.
    """

    per_apdu_s: float = 0.010
    generate_rsa_s: float = 10.0
    generate_ec_s: float = 1.0
    sign_rsa_s: float = 0.25
    sign_ec_s: float = 0.10
    put_data_block_s: float = 0.030
    mgmt_auth_s: float = 0.010

    def delay(self, apdu: bytes) -> float:
        if len(apdu) < 4:
            return self.per_apdu_s
        cla, ins, p1, p2 = apdu[:4]
        extra = 0.0
        final = not cla & 0x10
        if ins == 0x47 and final:
            extra = self.generate_rsa_s if b"\x80\x01\x07" in apdu[5:] else self.generate_ec_s
        elif ins == 0x87 and final:
            if p2 == 0x9B:
                extra = self.mgmt_auth_s
            elif p1 == 0x07:
                extra = self.sign_rsa_s
            else:
                extra = self.sign_ec_s
        elif ins == 0xDB:
            extra = self.put_data_block_s
        return self.per_apdu_s + extra

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


NO_LATENCY = None


# -- timing accountant ------------------------------------------------------------------------
@dataclass
class Clock:
    """Accumulates time spent in the card (transport) and in the CA (minus nested card time)."""

    card_s: float = 0.0
    card_model_s: float = 0.0
    ca_s: float = 0.0
    ca_calls: Counter = field(default_factory=Counter)


class TracingTransport:
    """Wraps a CardTransport: records every APDU (INS, bytes each way, seconds) and adds latency."""

    def __init__(self, inner: Any, clock: Clock | None = None, latency: LatencyModel | None = None) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "traced")
        self.clock = clock or Clock()
        self.latency = latency
        self.records: list[tuple[int, int, int, float]] = []

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        t0 = time.perf_counter()
        if self.latency is not None:
            time.sleep(self.latency.delay(apdu))
        data, sw = self.inner.transmit(apdu)
        dt_ = time.perf_counter() - t0
        self.clock.card_s += dt_
        self.records.append((apdu[1], len(apdu), len(data) + 2, dt_))
        return data, sw

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return self.inner.transaction()

    def close(self) -> None:
        self.inner.close()


def summarize(records: list[tuple[int, int, int, float]]) -> dict[str, Any]:
    by: dict[str, dict[str, int]] = defaultdict(lambda: {"apdus": 0, "bytes_out": 0, "bytes_in": 0})
    for ins, out, inn, _ in records:
        row = by[ins_name(ins)]
        row["apdus"] += 1
        row["bytes_out"] += out
        row["bytes_in"] += inn
    return {"apdus": len(records), "bytes_out": sum(r[1] for r in records), "bytes_in": sum(r[2] for r in records),
            "by_instruction": dict(sorted(by.items(), key=lambda kv: -kv[1]["apdus"]))}


class TimedIssuer:
    """Proxy for an Issuer: time in each call, minus the card time of the signer callbacks inside it."""

    def __init__(self, inner: Any, clock: Clock) -> None:
        self._inner = inner
        self._clock = clock
        self.name = getattr(inner, "name", "issuer")

    def _timed(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        card0, t0 = self._clock.card_s, time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self._clock.ca_s += (time.perf_counter() - t0) - (self._clock.card_s - card0)
            self._clock.ca_calls[what] += 1

    def ca_certificates(self) -> Any:
        return self._timed("ca_certificates", self._inner.ca_certificates)

    def supported_key_types(self) -> Any:
        return self._timed("supported_key_types", self._inner.supported_key_types)

    @property
    def cancel(self) -> Any:
        return self._inner.cancel

    def request_signer_slot(self, slot: str) -> Any:
        return self._inner.request_signer_slot(slot)

    def challenge_password(self, grant: Any) -> Any:
        return self._inner.challenge_password(grant)

    def authorize_renewal(self, *args: Any) -> Any:
        return self._timed("authorize_renewal", self._inner.authorize_renewal, *args)

    def issue(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("issue", self._inner.issue, *args, **kwargs)


# -- CA and cards ----------------------------------------------------------------------------
def make_ca(directory: Path) -> Any:
    from card.enrollment.local import LocalCA, init_ca

    init_ca(directory, "cardrenew Bench CA")
    return LocalCA(directory)


def make_state(ca: Any, key_type: Any = None, slots: Any = None) -> Any:
    from card.emulator.create import create_card_state
    from card.piv import KeyType, Slot

    return create_card_state(ca, expires_in_days=30, key_type=key_type or KeyType.RSA2048,
                             slots=slots or (Slot.AUTHENTICATION, Slot.SIGNATURE))


def settings_for(ca_dir: Path, state_dir: Path, slots: Any = None) -> Any:
    from card.config import Settings
    from card.enrollment.local_settings import LocalIssuerSettings

    kw: dict[str, Any] = {}
    if slots is not None:
        kw["slots"] = slots
    return Settings(issuer=LocalIssuerSettings(ca_dir), management_key_source="default",
                    state_dir=state_dir, **kw)


def write_config(path: Path, ca_dir: Path, slots: list[str] | None = None) -> Path:
    slots = slots or ["9A", "9C"]
    entries = ", ".join(f'{{ slot = "{s}", label = "Slot {s}" }}' for s in slots)
    path.write_text(f'[renewal]\nwindow_days = 90\nslots = [{entries}]\n\n[issuer]\ntype = "local"\n'
                    f'directory = "{ca_dir}"\n\n[management_key]\nsource = "default"\nalgorithm = "3DES"\n')
    return path


# -- vpcd --------------------------------------------------------------------------------------
def reader_has_card(name: str) -> bool | None:
    """True/False from pcscd; None when pcscd cannot be asked."""
    from card import pcsc

    try:
        return dict(pcsc.list_readers()).get(name)
    except Exception:  # noqa: BLE001
        return None


def wait_reader_free(name: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if reader_has_card(name) is False:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(2.0)


class CardCounter:
    """Wraps SoftPivCard.process_apdu: response sizes, time in the model, optional latency."""

    def __init__(self, card: Any, latency: LatencyModel | None = None) -> None:
        self.card = card
        self.latency = latency
        self.records: list[tuple[int, int, int, float]] = []
        self.model_s = 0.0
        inner = card.process_apdu

        def process(apdu: bytes) -> bytes:
            # The model's delay is the card's whole time for the command: the emulator's own work (an
            # RSA key generation in Python's cryptography, under the interpreter lock that every card
            # served from this process shares) counts inside it, as a real card's chip computes while
            # the reader waits. (Before issue 15 the delay was added on top: each served card's key
            # generations then also queued behind the others' for the lock, a cost no real card has.)
            t0 = time.perf_counter()
            try:
                resp = inner(apdu)
            finally:
                if self.latency is not None:
                    left = self.latency.delay(apdu) - (time.perf_counter() - t0)
                    if left > 0:
                        time.sleep(left)
            d = time.perf_counter() - t0
            self.model_s += d
            self.records.append((apdu[1] if len(apdu) > 1 else -1, len(apdu), len(resp), d))
            return resp

        card.process_apdu = process

    def mark(self) -> int:
        return len(self.records)


class _QuickAckSocket:
    """Socket proxy that re-arms TCP_QUICKACK after every recv (the length header too)."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def recv(self, n: int) -> bytes:
        from card.emulator import vpcd

        data = self._sock.recv(n)
        vpcd._quickack(self._sock)
        return data


def _serve_quickack_on_header(card: Any, host: str, port: int, stop: threading.Event) -> None:
    """Benchmark-only variant of card.emulator.vpcd.serve (one connection): ``serve_connection``
    on a socket that re-arms TCP_QUICKACK after the 2-byte length header too, not only after the
    body. vpcd writes header and body separately, Nagle holds the body until the header is ACKed,
    and our delayed ACK then costs ~40 ms per APDU."""
    import socket

    from card.emulator import vpcd

    with socket.create_connection((host, port), timeout=2) as sock:
        vpcd.serve_connection(card, _QuickAckSocket(sock), stop)  # type: ignore[arg-type]


@contextlib.contextmanager
def served(card: Any, port: int, wait_s: float = 10.0, quickack_fix: bool = False) -> Iterator[str]:
    """Serve ``card`` on vpcd ``port`` in a thread (card.emulator.vpcd.serve); yields the reader name.

    ``quickack_fix``: use the benchmark's variant that also ACKs the length header at once.
    """
    from card.emulator import vpcd

    name = READERS[port]
    stop = threading.Event()
    target = _serve_quickack_on_header if quickack_fix else vpcd.serve
    th = threading.Thread(target=target, args=(card, "127.0.0.1", port, stop), daemon=True,
                          name=f"vpcd-{port}")
    th.start()
    try:
        deadline = time.monotonic() + wait_s
        while reader_has_card(name) is not True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the card did not appear in {name}")
            time.sleep(0.05)
        yield name
    finally:
        stop.set()
        th.join(5)
        deadline = time.monotonic() + 5
        while reader_has_card(name) and time.monotonic() < deadline:
            time.sleep(0.05)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")
