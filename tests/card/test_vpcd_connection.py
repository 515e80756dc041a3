"""The emulator's vpcd connection (card/emulator/vpcd.py) ends cleanly whatever the peer does.

pcscd's vpcd driver may reset the TCP connection in the middle of a message (pcscd restarted, the
reader removed): the serving loop must report the connection closed and reconnect, never die with
the exception (the sweep's serving thread did: ``ConnectionResetError`` in ``_recv_exact``).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

from card.emulator.card import SoftPivCard
from card.emulator.create import create_card_state
from card.emulator.vpcd import serve_connection
from card.enrollment.local import LocalCA


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER on, timeout 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _serve_until_peer_does(ca: LocalCA, peer_action: Callable[[socket.socket], None]) -> str:
    card = SoftPivCard(create_card_state(ca))
    with socket.create_server(("127.0.0.1", 0)) as server:
        peer = socket.create_connection(server.getsockname())
        ours, _ = server.accept()
        outcome: list[str | BaseException] = []

        def run() -> None:
            try:
                outcome.append(serve_connection(card, ours, threading.Event()))
            except BaseException as exc:  # noqa: BLE001 - the test reports what escaped
                outcome.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        peer_action(peer)
        thread.join(timeout=10)
        ours.close()
    assert not thread.is_alive(), "serve_connection hung"
    assert len(outcome) == 1
    assert isinstance(outcome[0], str), f"serve_connection raised {outcome[0]!r}"
    return outcome[0]


def test_a_reset_in_the_middle_of_an_apdu_ends_the_connection_as_closed(ca: LocalCA) -> None:
    def announce_ten_bytes_then_reset(peer: socket.socket) -> None:
        peer.sendall((10).to_bytes(2, "big") + b"\x00\xa4")  # length 10, two bytes of the body
        _reset(peer)

    assert _serve_until_peer_does(ca, announce_ten_bytes_then_reset) == "closed"


def test_an_orderly_close_is_closed(ca: LocalCA) -> None:
    assert _serve_until_peer_does(ca, lambda peer: peer.close()) == "closed"
