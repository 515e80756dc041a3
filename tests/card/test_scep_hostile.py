"""A hostile CA server (issue 11 item 7): one that drips its reply one byte at a time, floods us with
a reply of a gigabyte and more, or answers junk. Every request has a total deadline and a size cap,
every wait (HTTP, the RA hook, the PENDING poll) ends within a second of cancellation, and every
reply either parses or is one of the documented issuer errors.

The servers are threads on loopback, each with a bounded loop that ends on its own.
"""

from __future__ import annotations

import datetime as dt
import socket
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from card.enrollment.base import IssuerReplyInvalid, IssuerUnavailable, RaUnavailable, RenewalGrant
from card.enrollment.http import DeadlinePassed, ResponseTooLarge
from card.enrollment.scep import ScepIssuer
from card.enrollment.scep_messages import STATUS_PENDING
from card.enrollment.scep_ra_hook import run_hook
from card.enrollment.scep_settings import ScepIssuerSettings
from card.errors import OperationCancelled

HANG_BOUND_S = 10.0
"""A call that has not returned after this long is a hang (the old code took 75 s past its deadline)."""


class Server:
    """A one-shot TCP server on loopback: reads the request, then runs ``reply(conn, stop)``.
    ``stop`` is set when the test ends; every ``reply`` loop is bounded as well."""

    def __init__(self, reply: Callable[[socket.socket, threading.Event], None]) -> None:
        self.stop = threading.Event()
        self.sent = 0
        self._srv = socket.create_server(("127.0.0.1", 0))
        self._srv.settimeout(HANG_BOUND_S)
        self.url = f"http://127.0.0.1:{self._srv.getsockname()[1]}/scep"
        self._reply = reply
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self._srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(HANG_BOUND_S)
            try:
                conn.recv(65536)
                self._reply(conn, self.stop)
            except OSError:  # the client gave up: what we want
                pass

    def close(self) -> None:
        self.stop.set()
        self._srv.close()
        self._thread.join(HANG_BOUND_S)


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(reply: Callable[[socket.socket, threading.Event], None]) -> Server:
        servers.append(Server(reply))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def drip(interval_s: float, total: int = 60) -> Callable[[socket.socket, threading.Event], None]:
    """A valid HTTP reply sent one byte every ``interval_s`` (at most ``total`` bytes)."""
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 30\r\n\r\n" + b"POSTPKIOperation\nAES\nSHA-256\n"

    def run(conn: socket.socket, stop: threading.Event) -> None:
        for byte in reply[:total]:
            conn.sendall(bytes([byte]))
            if stop.wait(interval_s):
                return
    return run


def call_bounded(fn: Callable[[], object]) -> tuple[BaseException | None, float]:
    """Run ``fn`` on a thread; fail the test if it has not returned within HANG_BOUND_S."""
    box: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            box.append(None)
        except BaseException as exc:  # noqa: BLE001
            box.append(exc)

    start = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_BOUND_S)
    assert not thread.is_alive(), f"still waiting after {HANG_BOUND_S} s: no total deadline / no cancellation"
    return box[0], time.monotonic() - start


def scep(url: str, **kw: object) -> ScepIssuer:
    cancel = kw.pop("cancel", None)
    return ScepIssuer(ScepIssuerSettings(url, "00" * 32, **kw), cancel=cancel)  # type: ignore[arg-type]


def test_a_dripping_server_is_cut_off_at_the_total_deadline(serve: Callable[..., Server]) -> None:
    """One byte every 0.4 s never trips a per-read timeout of 1 s; the total deadline of 1 s ends it."""
    server = serve(drip(0.4))
    exc, _ = call_bounded(lambda: scep(server.url, timeout_s=1.0).capabilities())
    assert isinstance(exc, DeadlinePassed) and isinstance(exc, IssuerUnavailable), exc
    assert "did not answer completely within 1 s (issuer.timeout_s)" in str(exc)


def test_cancellation_ends_an_http_wait_within_a_second(serve: Callable[..., Server]) -> None:
    server = serve(drip(0.5))
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    exc, took = call_bounded(lambda: scep(server.url, timeout_s=60, cancel=cancel).ca_certificates())
    assert isinstance(exc, OperationCancelled), exc
    assert took < 0.3 + 1.0 + 1.0  # within a second of the cancel (plus slack for a busy machine)


def flood(with_length: bool, limit: int) -> Callable[[socket.socket, threading.Event], None]:
    """A reply announcing (or not) 1.5 GiB, streamed until ``limit`` bytes or the client stops."""
    def run(conn: socket.socket, stop: threading.Event) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-x509-ca-cert\r\n"
        conn.sendall(head + (b"Content-Length: 1610612736\r\n" if with_length else b"") + b"\r\n")
        chunk, sent = b"\x30" * 65536, 0
        while sent < limit and not stop.is_set():
            conn.sendall(chunk)
            sent += len(chunk)
    return run


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "until-close"])
def test_a_flood_is_refused_at_the_size_cap_with_bounded_memory(serve: Callable[..., Server], with_length: bool) -> None:
    server = serve(flood(with_length, limit=96 * 1024 * 1024))
    tracemalloc.start()
    try:
        exc, _ = call_bounded(lambda: scep(server.url, timeout_s=30, max_response_bytes=1024 * 1024).ca_certificates())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(exc, ResponseTooLarge) and isinstance(exc, IssuerUnavailable), exc
    assert "issuer.max_response_bytes" in str(exc)
    assert peak < 8 * 1024 * 1024, f"{peak} bytes held for a 1 MiB cap"


def reply_with(body: bytes, content_type: str, status: str = "200 OK") -> Callable[[socket.socket, threading.Event], None]:
    def run(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)
    return run


@pytest.mark.parametrize(("body", "ctype"), [
    (b"\x30\x03\x02\x01\x01", "application/x-x509-ca-ra-cert"),  # a SEQUENCE that is no ContentInfo
    (b"\x30\x03\x02\x01\x01", "application/x-x509-ca-cert"),
    (b"", "application/x-x509-ca-cert"),
    (b"<html><body>502 Bad Gateway</body></html>", "text/html"),
    (bytes.fromhex("301306092a864886f70d010702a00630040201013000"), "application/x-x509-ca-ra-cert"),
    (bytes.fromhex("300b06092a864886f70d010701"), "application/x-x509-ca-ra-cert"),  # data, not signedData
])
def test_junk_getcacert_is_an_issuer_error_not_a_crash(serve: Callable[..., Server], body: bytes, ctype: str) -> None:
    server = serve(reply_with(body, ctype))
    exc, _ = call_bounded(lambda: scep(server.url, timeout_s=5).ca_certificates())
    assert isinstance(exc, IssuerReplyInvalid), repr(exc)
    assert "nothing was changed" in str(exc)


def test_a_pending_poll_ends_within_a_second_of_cancellation() -> None:
    """The PENDING → CertPoll schedule waits on the cancellation token (never ``time.sleep``)."""
    cancel = threading.Event()
    issuer = scep("http://127.0.0.1:9/scep", timeout_s=5, poll_schedule_s=(60.0, 60.0), cancel=cancel)
    from cryptography.hazmat.primitives.asymmetric import rsa

    from card.enrollment.base import CardKey

    key = rsa.generate_private_key(65537, 2048)
    card_key = CardKey(key.public_key(), lambda m: b"", lambda b: b"")
    issuer._ca = [object()]  # type: ignore[list-item]
    issuer._transport_certificate = lambda k: None  # type: ignore[method-assign,assignment,return-value]
    issuer._pki_message = lambda *a: b""  # type: ignore[method-assign,assignment,return-value]
    issuer._http = lambda op, body=None: (b"", "")  # type: ignore[method-assign,assignment,return-value]
    issuer._read_cert_rep = lambda *a: (STATUS_PENDING, b"")  # type: ignore[method-assign,assignment,return-value]
    grant = RenewalGrant("T1", "9A", "", "", dt.datetime.now(dt.timezone.utc))

    class Csr:
        subject = None

        def public_bytes(self, encoding: object) -> bytes:
            return b""

    threading.Timer(0.3, cancel.set).start()
    exc, took = call_bounded(lambda: issuer.issue(grant, Csr(), key.public_key(), card_key=card_key))  # type: ignore[arg-type]
    assert isinstance(exc, OperationCancelled), exc
    assert "had not issued yet (transaction T1)" in str(exc)
    assert took < 0.3 + 1.0 + 1.0


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return status != "Z"


@pytest.mark.parametrize("how", ["cancel", "deadline"])
def test_a_sleeping_ra_hook_and_its_children_are_ended(tmp_path: Path, how: str) -> None:
    """The RA hook (``challenge_command``) is killed with its process group on cancellation
    (OperationCancelled) and at the total deadline (RaUnavailable)."""
    pids = tmp_path / "pids"
    hook = tmp_path / "hook.py"
    hook.write_text("import os, subprocess, sys, time\n"
                    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                    f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
                    "time.sleep(60)\n")
    cancel = threading.Event()
    issuer = ScepIssuer(ScepIssuerSettings("http://127.0.0.1:9/scep", None, challenge_command=(sys.executable, str(hook)),
                                     timeout_s=60 if how == "cancel" else 1.5), cancel=cancel)
    if how == "cancel":
        def cancel_when_started() -> None:
            for _ in range(100):
                if pids.exists() and pids.read_text():
                    break
                time.sleep(0.05)
            cancel.set()
        threading.Thread(target=cancel_when_started, daemon=True).start()
    exc, _ = call_bounded(lambda: run_hook([sys.executable, str(hook)], "{}", issuer.settings.timeout_s, issuer.cancel))
    if how == "cancel":
        assert isinstance(exc, OperationCancelled), exc
    else:
        assert isinstance(exc, RaUnavailable), exc
    hook_pid, child_pid = map(int, pids.read_text().split())
    for _ in range(50):  # the kill is immediate; give the kernel a moment to reap
        if not _alive(hook_pid) and not _alive(child_pid):
            break
        time.sleep(0.1)
    assert not _alive(hook_pid) and not _alive(child_pid)


@pytest.mark.parametrize("status", ["500 Internal Server Error", "302 Found", "404 Not Found"])
def test_http_errors_are_issuer_unavailable(serve: Callable[..., Server], status: str) -> None:
    server = serve(reply_with(b"no", "text/plain", status))
    exc, _ = call_bounded(lambda: scep(server.url, timeout_s=5).capabilities())
    assert type(exc) is IssuerUnavailable and f"answered HTTP {status.split()[0]}" in str(exc), exc


def test_nothing_listening_is_issuer_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connection refused
        exc, _ = call_bounded(lambda: scep(f"http://127.0.0.1:{port}/scep", timeout_s=5).capabilities())
    assert type(exc) is IssuerUnavailable and "cannot be reached" in str(exc), exc
