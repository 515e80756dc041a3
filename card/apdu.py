"""APDU encoding, command chaining and response chaining (ISO 7816-4 §5, SP 800-73-4 Part 2 §3).

Short APDUs only: data longer than 255 bytes is sent as a command chain (CLA bit ``0x10``
on every block but the last, 255-byte blocks); ``61 XX`` answers are followed with
GET RESPONSE (``00 C0 00 00 XX``) and ``6C XX`` answers are resent with ``Le = XX``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from card.errors import BadResponseError, CardRemovedError
from card.transport import CardTransport

logger = logging.getLogger(__name__)

TRAFFIC = 5
"""Logging level of the APDU trace (below DEBUG). Secrets are redacted, never logged."""
logging.addLevelName(TRAFFIC, "TRAFFIC")

INS_GET_RESPONSE = 0xC0
MAX_RESPONSE_BYTES = 65536
"""Upper bound on an accumulated response (F06: never loop forever on ``61 XX``)."""
MAX_GET_RESPONSE_ROUNDS = 300
CHAIN_BLOCK_BYTES = 255

# Commands whose data field holds a secret: VERIFY, CHANGE REFERENCE DATA, RESET RETRY
# COUNTER, and GENERAL AUTHENTICATE with the management key (witness/challenge values).
_SECRET_INS = {0x20, 0x24, 0x2C}
SW_OK = 0x9000


@dataclass(frozen=True)
class CommandApdu:
    """One command APDU before chaining: CLA INS P1 P2, data (bytes), Le (None = absent, 0 = 256)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = 0

    def encode(self) -> bytes:
        """Encode as a short APDU (data ≤ 255 bytes). Raises ValueError otherwise."""
        if len(self.data) > 255:
            raise ValueError("data too long for a short APDU; use chaining")
        out = bytes([self.cla, self.ins, self.p1, self.p2])
        if self.data:
            out += bytes([len(self.data)]) + self.data
        if self.le is not None:
            out += bytes([self.le & 0xFF])
        return out

    def chained(self) -> list[bytes]:
        """Encode as a command chain of short APDUs (ISO 7816-4 §5.1.1.1)."""
        if len(self.data) <= CHAIN_BLOCK_BYTES:
            return [self.encode()]
        blocks = [self.data[i : i + CHAIN_BLOCK_BYTES] for i in range(0, len(self.data), CHAIN_BLOCK_BYTES)]
        out = []
        for n, block in enumerate(blocks):
            last = n == len(blocks) - 1
            cla = self.cla if last else self.cla | 0x10
            out.append(CommandApdu(cla, self.ins, self.p1, self.p2, block, self.le if last else None).encode())
        return out


def redact(apdu: bytes) -> str:
    """Hex of a command APDU for the trace, with the data field of secret-bearing commands hidden."""
    if len(apdu) >= 5 and (apdu[1] in _SECRET_INS or (apdu[1] == 0x87 and apdu[3] == 0x9B)):
        return apdu[:5].hex(" ").upper() + f" <{max(0, len(apdu) - 5)} bytes redacted>"
    return apdu.hex(" ").upper()


class ApduProtocol:
    """Sends :class:`CommandApdu` values over a :class:`CardTransport`.

    Counts APDUs and bytes each way (``apdus_sent``, ``bytes_sent``, ``bytes_received``).
    """

    def __init__(self, transport: CardTransport) -> None:
        self.transport = transport
        self.apdus_sent = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.card_removed = False
        """Set once the transport reported the card removed; the connection is then dead."""

    def _exchange(self, raw: bytes) -> tuple[bytes, int]:
        logger.log(TRAFFIC, "> %s", redact(raw))
        try:
            data, sw = self.transport.transmit(raw)
        except CardRemovedError:
            self.card_removed = True
            raise
        self.apdus_sent += 1
        self.bytes_sent += len(raw)
        self.bytes_received += len(data) + 2
        secret_reply = raw[1] == 0x87 and len(raw) > 3 and raw[3] == 0x9B
        logger.log(TRAFFIC, "< %s %04X", "<redacted>" if secret_reply else data.hex(" ").upper(), sw)
        return data, sw

    def send(self, cmd: CommandApdu) -> tuple[bytes, int]:
        """Send a command (chained if needed) and collect the whole response.

        Total and bounded: at most one ``6C XX`` resend and :data:`MAX_GET_RESPONSE_ROUNDS`
        GET RESPONSE rounds, and never more than :data:`MAX_RESPONSE_BYTES` of data kept, whatever
        the card answers (F06).

        Returns:
            (response data, final SW1SW2). Intermediate chain blocks that fail stop the
            chain and their SW is returned.

        Raises:
            CardRemovedError: the card went away (from the transport).
            BadResponseError: the response exceeds 64 KiB or GET RESPONSE never ends.
        """
        data = b""
        sw = SW_OK
        blocks = cmd.chained()
        for raw in blocks:
            data, sw = self._exchange(raw)
            if raw is not blocks[-1] and sw != SW_OK:
                return data, sw
        if sw >> 8 == 0x6C:  # wrong Le: resend the same command with the card's Le, once
            last = blocks[-1]
            resend = last[:-1] + bytes([sw & 0xFF]) if cmd.le is not None else last + bytes([sw & 0xFF])
            data, sw = self._exchange(resend)
        collected = bytearray(data)
        rounds = 0
        while True:
            if len(collected) > MAX_RESPONSE_BYTES:
                raise BadResponseError(f"the card's response is longer than {MAX_RESPONSE_BYTES} bytes; refused")
            if sw >> 8 != 0x61:
                return bytes(collected), sw
            rounds += 1
            if rounds > MAX_GET_RESPONSE_ROUNDS:
                raise BadResponseError("card keeps sending 61XX: response too long")
            more, sw = self._exchange(bytes([0x00, INS_GET_RESPONSE, 0x00, 0x00, sw & 0xFF]))
            collected += more
