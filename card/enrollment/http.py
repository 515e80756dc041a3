"""One HTTP request to a CA with a total deadline, a size cap and a cancellation token.

A per-read socket timeout does not bound a request: a server that sends one byte every two
seconds never trips it. So every request here has one *total* deadline (connect, TLS, sending,
the status line, the headers and the whole body), a cap on the reply's size (checked against
``Content-Length`` before reading and again while reading), and a ``threading.Event`` that ends
it within a fraction of a second when set (SIGTERM, SIGINT, the app closing).

The HTTP itself is the standard library's ``http.client`` (status line, header limits, chunked
transfer coding); this module only adds the bounds. The connection is made non-blocking so that
cancellation also ends a connect in progress; after that a watchdog thread waits on the
cancellation token and the deadline and shuts the socket down, which ends any blocked read.
Name resolution (``getaddrinfo``) runs on a daemon thread for the same reason. Redirects are not
followed and no proxy is used; replies are never decompressed (``Accept-Encoding: identity``).
"""

from __future__ import annotations

import errno
import http.client
import select
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from card.enrollment.base import IssuerUnavailable
from card.errors import OperationCancelled

DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""Largest reply accepted by default (bytes): a CA certificate chain or a CertRep is a few KiB."""
WATCH_SLICE_S = 0.1
"""How often a wait looks at the cancellation token (seconds)."""


class ResponseTooLarge(IssuerUnavailable):
    """The CA's reply is larger than ``issuer.max_response_bytes``; it was not read."""

    title = "The certificate authority's answer is too large"
    code = "CA-TOO-LARGE"
    retry_helps = False  # the same request gets the same oversized answer: no retries (break-it finding 3)


class DeadlinePassed(IssuerUnavailable):
    """The CA did not answer completely within ``issuer.timeout_s`` (the total deadline)."""

    title = "The certificate authority did not answer in time"
    code = "CA-TIMEOUT"


@dataclass(frozen=True)
class HttpReply:
    """A complete ``200 OK`` reply: ``body`` (at most the cap) and its ``content_type`` (may be "")."""

    body: bytes
    content_type: str


class Deadline:
    """A total deadline on the monotonic clock plus a cancellation token.

    Args:
        seconds: the time allowed from now (finite, > 0).
        cancel: set by the caller to stop every wait that uses this deadline (None: never).
    """

    def __init__(self, seconds: float, cancel: threading.Event | None = None) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.cancel = cancel if cancel is not None else threading.Event()

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        """Raise OperationCancelled if cancelled, DeadlinePassed if the time is up."""
        if self.cancel.is_set():
            raise OperationCancelled(f"stopped while waiting for {what}")
        if self.remaining() <= 0:
            raise DeadlinePassed(f"{what} did not finish within {self.seconds:g} s")

    def wait(self, seconds: float) -> bool:
        """Wait ``seconds`` (never past the deadline) on the token; True if cancelled."""
        return self.cancel.wait(max(0.0, min(seconds, self.remaining())))


class Watchdog:
    """Calls ``fire(reason)`` once, from its own thread, when ``deadline`` is cancelled or passes
    before :meth:`stop`. ``reason`` is ``"cancelled"`` or ``"deadline"``; :attr:`fired` keeps it.
    ``fire`` never runs after :meth:`stop` returned (a lock orders the two)."""

    def __init__(self, deadline: Deadline, fire: Callable[[str], None]) -> None:
        self._deadline = deadline
        self._fire = fire
        self._lock = threading.Lock()
        self._stopped = False
        self.fired: str | None = None
        self._thread = threading.Thread(target=self._run, name="deadline-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while True:
            cancelled = self._deadline.cancel.wait(max(0.0, min(WATCH_SLICE_S, self._deadline.remaining())))
            with self._lock:
                if self._stopped:
                    return
                if cancelled:
                    self.fired = "cancelled"
                elif self._deadline.remaining() <= 0:
                    self.fired = "deadline"
                else:
                    continue
                try:
                    self._fire(self.fired)
                except OSError:  # the socket is already shut down or closed
                    pass
                return

    def stop(self) -> None:
        """No firing from now on (the thread ends by itself within :data:`WATCH_SLICE_S`)."""
        with self._lock:
            self._stopped = True


AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]
"""One entry of ``socket.getaddrinfo``: family, type, protocol, canonical name, socket address."""


def _resolve(host: str, port: int, deadline: Deadline, what: str) -> Sequence[AddressInfo]:
    """getaddrinfo on a daemon thread, waited for on the token (a stuck resolver is left behind)."""
    result: list[Sequence[AddressInfo] | OSError] = []

    def run() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            result.append(exc)

    thread = threading.Thread(target=run, name="resolve", daemon=True)
    thread.start()
    while True:
        thread.join(max(0.0, min(WATCH_SLICE_S, deadline.remaining())))
        deadline.check(what)
        if not thread.is_alive():
            break
    outcome = result[0]
    if isinstance(outcome, OSError):
        raise outcome
    return outcome


def _connect(host: str, port: int, deadline: Deadline, what: str) -> socket.socket:
    """A connected blocking socket; the connect itself is non-blocking and looks at the token."""
    last: OSError | None = None
    for family, stype, proto, _, addr in _resolve(host, port, deadline, what):
        sock = socket.socket(family, stype, proto)
        try:
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            if err not in (0, *_IN_PROGRESS):
                raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
            while err != 0:
                deadline.check(what)
                _, writable, _ = select.select([], [sock], [], max(0.0, min(WATCH_SLICE_S, deadline.remaining())))
                if writable:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err != 0:
                        raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
                    break
            sock.setblocking(True)
            sock.settimeout(max(0.001, deadline.remaining()))  # a bound per read too; the watchdog does the rest
            return sock
        except (OSError, OperationCancelled, DeadlinePassed) as exc:
            sock.close()
            if not isinstance(exc, OSError):
                raise
            last = exc
    raise last or OSError("no address")


_IN_PROGRESS = (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK)


def request(url: str, *, body: bytes | None = None, content_type: str | None = None, timeout_s: float,
            max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES, cancel: threading.Event | None = None,
            what: str = "the certificate authority") -> HttpReply:
    """GET (``body`` None) or POST ``url`` (``http`` or ``https``) and read the whole reply.

    Args:
        timeout_s: the total deadline in seconds, from the call to the last byte of the body.
        max_bytes: the largest body accepted.
        cancel: when set, the request ends within about :data:`WATCH_SLICE_S` seconds.

    Raises:
        OperationCancelled: ``cancel`` was set.
        DeadlinePassed: the reply was not complete within ``timeout_s`` (IssuerUnavailable).
        ResponseTooLarge: the body is larger than ``max_bytes`` (IssuerUnavailable).
        IssuerUnavailable: cannot connect, a broken reply, or an HTTP status other than 200.
    """
    deadline = Deadline(timeout_s, cancel)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise IssuerUnavailable(f"{what}: {url!r} is not an http:// or https:// URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise IssuerUnavailable(f"{what}: {url!r} has a bad port") from exc
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    current: list[socket.socket] = []  # the socket to shut down: the TCP one, then its TLS wrapper

    def shut(_reason: str) -> None:
        current[-1].shutdown(socket.SHUT_RDWR)  # wakes a blocked read or write at once

    def stopped(exc: BaseException | None) -> Exception | None:
        if dog.fired == "cancelled":
            return OperationCancelled(f"stopped while waiting for {what}")
        if dog.fired == "deadline" or isinstance(exc, TimeoutError):
            return DeadlinePassed(f"{what} did not answer completely within {timeout_s:g} s (issuer.timeout_s)")
        return None

    try:
        current.append(_connect(parts.hostname, port, deadline, what))
        with Watchdog(deadline, shut) as dog:
            try:
                if parts.scheme == "https":
                    current.append(ssl.create_default_context().wrap_socket(current[-1], server_hostname=parts.hostname))
                reply = _exchange(current[-1], parts.hostname, port, target, body, content_type, max_bytes, what)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if (why := stopped(exc)) is not None:
                    raise why from exc
                raise
            if (why := stopped(None)) is not None:  # a shut-down socket can look like a reply's end
                raise why
            return reply
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise IssuerUnavailable(f"{what} at {url} cannot be reached ({reason})") from exc
    finally:
        for sock in current:
            sock.close()


def _exchange(sock: socket.socket, host: str, port: int, target: str, body: bytes | None,
              content_type: str | None, max_bytes: int, what: str) -> HttpReply:
    conn = http.client.HTTPConnection(host, port)
    conn.sock = sock  # already connected (and wrapped): http.client only speaks HTTP on it
    headers = {"Accept-Encoding": "identity", "Connection": "close"}
    if content_type:
        headers["Content-Type"] = content_type
    conn.request("POST" if body is not None else "GET", target, body=body, headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise IssuerUnavailable(f"{what} answered HTTP {resp.status}")
    length = resp.getheader("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise ResponseTooLarge(f"{what} sent a reply of {int(length)} bytes; at most {max_bytes} are accepted "
                               "(issuer.max_response_bytes)")
    data = bytearray()
    while chunk := resp.read(min(65536, max_bytes + 1 - len(data))):
        data += chunk
        if len(data) > max_bytes:
            raise ResponseTooLarge(f"{what} sent a reply of more than {max_bytes} bytes "
                                   "(issuer.max_response_bytes)")
    return HttpReply(bytes(data), resp.getheader("Content-Type", "") or "")
