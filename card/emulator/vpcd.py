"""Serve a :class:`SoftPivCard` to pcscd through the vsmartcard ``vpcd`` reader driver.

Wire protocol (vsmartcard ``vpcd.c``): every frame is a big-endian uint16 length then the
bytes. A 1-byte frame is a control code (``00`` power off, ``01`` power on, ``02`` reset,
``04`` get ATR — only ``04`` is answered); longer frames are command APDUs answered with the
response APDU. Closing the connection is a card removal for pcscd.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from card.emulator.card import CardDropped, SoftPivCard

logger = logging.getLogger(__name__)

DEFAULT_VPCD = ("127.0.0.1", 35963)
"""Reader ``Virtual PCD 00 00``; port 35964 is ``Virtual PCD 00 01``."""


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    buf = b""
    while len(buf) < size:
        try:
            chunk = sock.recv(size - len(buf))
        except TimeoutError:
            continue
        except OSError:  # reset by vpcd in the middle of a message: as closed
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


def _send(sock: socket.socket, data: bytes) -> bool:
    """Send all of ``data``; False when vpcd has gone (reset, broken pipe)."""
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _quickack(sock: socket.socket) -> None:
    # vpcd waits on delayed ACKs (~44 ms per APDU) unless the card side ACKs at once.
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        except OSError:
            pass


def serve_connection(card: SoftPivCard, sock: socket.socket, stop: threading.Event) -> str:
    """Answer vpcd on one connection until it closes, ``stop`` is set or the card is dropped.

    Returns:
        ``"closed"``, ``"stopped"`` or ``"dropped"``.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(0.5)
    while not stop.is_set():
        try:
            header = sock.recv(2)
        except TimeoutError:
            continue
        except OSError:
            return "closed"
        if not header:
            return "closed"
        _quickack(sock)  # vpcd sends the length and the body separately: ACK each at once
        if len(header) == 1:
            rest = _recv_exact(sock, 1)
            if rest is None:
                return "closed"
            header += rest
        size = int.from_bytes(header, "big")
        body = _recv_exact(sock, size) if size else b""
        _quickack(sock)
        if body is None:
            return "closed"
        if size == 1:
            code = body[0]
            if code == 0x04:
                if not _send(sock, len(card.atr).to_bytes(2, "big") + card.atr):
                    return "closed"
            elif code in (0x00, 0x01, 0x02):
                card.power_on()
            continue
        try:
            reply = card.process_apdu(body)
        except CardDropped:
            logger.info("fault injection: card pulled; closing the vpcd connection")
            return "dropped"
        if not _send(sock, len(reply).to_bytes(2, "big") + reply):
            return "closed"
    return "stopped"


def serve(card: SoftPivCard, host: str = DEFAULT_VPCD[0], port: int = DEFAULT_VPCD[1],
          stop: threading.Event | None = None, reinsert_after_s: float | None = None) -> None:
    """Connect to vpcd and serve ``card``, reconnecting with back-off until ``stop`` is set.

    Args:
        reinsert_after_s: after a fault-injected drop, wait this long and re-insert the card
            (None: stay removed until ``stop``).
    """
    stop = stop or threading.Event()
    backoff = 0.2
    while not stop.is_set():
        if not card.present:
            if reinsert_after_s is None:
                stop.wait(0.5)
                continue
            stop.wait(reinsert_after_s)
            card.insert()
        try:
            sock = socket.create_connection((host, port), timeout=2)
        except OSError as exc:
            logger.debug("vpcd at %s:%d not reachable (%s); retrying", host, port, exc)
            stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)
            continue
        backoff = 0.2
        logger.info("card inserted into vpcd at %s:%d", host, port)
        with sock:
            outcome = serve_connection(card, sock, stop)
        logger.info("vpcd connection ended: %s", outcome)
        if outcome == "closed":
            time.sleep(0.2)
