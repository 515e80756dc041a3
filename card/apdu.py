"""APDU encoding, command chaining and response chaining (ISO 7816-4 §5, SP 800-73-4 Part 2 §3).

Short APDUs only: data longer than 255 bytes is sent as a command chain (CLA bit ``0x10``
on every block but the last, 255-byte blocks); ``61 XX`` answers are followed with
GET RESPONSE (``00 C0 00 00 XX``) and ``6C XX`` answers are resent with ``Le = XX``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import IntEnum, unique

from card.errors import BadResponseError, CardRemovedError
from card.sw import SW, family, sw2
from card.transport import CardTransport

logger = logging.getLogger(__name__)

TRAFFIC = 5
"""Logging level of the APDU trace (below DEBUG). Secrets are redacted, never logged: see :func:`trace_policy`."""
logging.addLevelName(TRAFFIC, "TRAFFIC")


@unique
class INS(IntEnum):
    """Instruction bytes of the commands we send and the emulator answers (SP 800-73-4 Part 2 §3;
    ISO 7816-4 §7 for GET RESPONSE; Yubico extensions per piv-protocol.md §3.2)."""

    VERIFY = 0x20
    CHANGE_REFERENCE_DATA = 0x24
    RESET_RETRY_COUNTER = 0x2C
    GENERATE_ASYMMETRIC_KEY_PAIR = 0x47
    GENERAL_AUTHENTICATE = 0x87
    SELECT = 0xA4
    GET_RESPONSE = 0xC0
    GET_DATA = 0xCB
    PUT_DATA = 0xDB
    GET_METADATA = 0xF7
    """Yubico extension (YubiKey 5.3+); other cards answer ``6D 00``."""
    GET_SERIAL = 0xF8
    """Yubico extension: the 4-byte serial number."""
    GET_VERSION = 0xFD
    """Yubico extension: 3-byte firmware version; other cards answer ``6D 00``."""
    IMPORT_ASYMMETRIC_KEY = 0xFE
    """Yubico extension; its data is a private key (only ever redacted here, never sent)."""
    SET_MANAGEMENT_KEY = 0xFF
    """Yubico extension; its data is a management key (only ever redacted here, never sent)."""


INS_GET_RESPONSE = INS.GET_RESPONSE
MAX_RESPONSE_BYTES = 65536
"""Upper bound on an accumulated response (F06: never loop forever on ``61 XX``)."""
MAX_GET_RESPONSE_ROUNDS = 300
CHAIN_BLOCK_BYTES = 255

# Commands whose data field holds a secret: VERIFY, CHANGE REFERENCE DATA, RESET RETRY
# COUNTER, Yubico IMPORT ASYMMETRIC KEY (FE) and SET MANAGEMENT KEY (FF); and GENERAL
# AUTHENTICATE with the management key (witness/challenge values), see _command_is_secret.
_SECRET_INS = {INS.VERIFY, INS.CHANGE_REFERENCE_DATA, INS.RESET_RETRY_COUNTER, INS.IMPORT_ASYMMETRIC_KEY,
               INS.SET_MANAGEMENT_KEY}
INS_VERIFY = INS.VERIFY
INS_GET_DATA = INS.GET_DATA
INS_PUT_DATA = INS.PUT_DATA
INS_GENERAL_AUTHENTICATE = INS.GENERAL_AUTHENTICATE
KEY_REF_MANAGEMENT = 0x9B
"""The PIV instructions and key reference the trace policy looks at (SP 800-73-4 Part 2 §3);
:mod:`card.piv` uses these."""
EC_ALGORITHMS = {0x11, 0x14}
"""ECC P-256 and P-384 (SP 800-78-4 Table 6-2): their GENERAL AUTHENTICATE results (signatures) are traced."""
SW_OK = SW.OK

PIN_PROTECTED_OBJECTS = frozenset(bytes.fromhex(h) for h in (
    "5FC103",  # Cardholder Fingerprints (SP 800-73-4 Part 1 Table 3: PIN)
    "5FC108",  # Cardholder Facial Image (PIN)
    "5FC109",  # Printed Information (PIN); YubiKey: the PIN-protected management key (88 { 89 key })
    "5FC121",  # Cardholder Iris Images (PIN)
    "5FFF00",  # YubiKey admin data (flags, the salt of a PIN-derived management key)
))
"""Objects whose value is never traced, in either direction (GET DATA replies, PUT DATA data)."""

PUBLIC_OBJECTS = frozenset({bytes.fromhex("5FC1%02X" % n) for n in (0x01, 0x02, 0x05, 0x06, 0x07, 0x0A, 0x0B, 0x0C)}
                           | {bytes.fromhex("5FC1%02X" % n) for n in range(0x0D, 0x21)} | {b"\x7e"})
"""Objects readable without the PIN (SP 800-73-4 Part 1 Table 3: certificates, CHUID, CCC, Security
Object, Key History, retired key certificates, Discovery): the only GET DATA replies traced after a
successful VERIFY. Any other object read while the PIN is verified may hold key material and is
redacted."""


def _get_data_object(apdu: bytes) -> bytes | None:
    """The object tag of a GET DATA / PUT DATA command (``5C <len> <tag>`` first in the data), else None."""
    if len(apdu) >= 7 and apdu[1] in (INS_GET_DATA, INS_PUT_DATA) and apdu[5] == 0x5C:
        return apdu[7 : 7 + apdu[6]]
    return None


def _command_is_secret(apdu: bytes) -> bool:
    if len(apdu) < 5:
        return False
    if apdu[1] in _SECRET_INS or (apdu[1] == INS_GENERAL_AUTHENTICATE and apdu[3] == KEY_REF_MANAGEMENT):
        return True
    return apdu[1] == INS_PUT_DATA and _get_data_object(apdu) in PIN_PROTECTED_OBJECTS


def trace_policy(apdu: bytes, *, pin_verified: bool) -> tuple[bool, bool]:
    """Which parts of one command's exchange the trace hides: ``(command data, reply data)``.

    Hidden: the data of VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER, Yubico IMPORT / SET
    MANAGEMENT KEY, GENERAL AUTHENTICATE with the management key ``9B`` (and its reply), and PUT DATA
    of a :data:`PIN_PROTECTED_OBJECTS` object; the reply to GET DATA of such an object always, and
    of any object outside :data:`PUBLIC_OBJECTS` while the PIN is verified (``pin_verified``); the
    reply to a private-key GENERAL AUTHENTICATE other than an EC signature (an RSA "signature" and
    an RSA decipher are the same APDU, and a decipher returns a content-encryption key; tag ``85``
    is ECDH, whose reply is a shared secret). GET RESPONSE continues the reply it belongs to.
    """
    command = _command_is_secret(apdu)
    reply = command
    if len(apdu) >= 5 and apdu[1] == INS_GET_DATA:
        obj = _get_data_object(apdu)
        reply = obj in PIN_PROTECTED_OBJECTS or (pin_verified and obj not in PUBLIC_OBJECTS)
    elif len(apdu) >= 5 and apdu[1] == INS_GENERAL_AUTHENTICATE:
        reply = reply or apdu[2] not in EC_ALGORITHMS or _has_tag_85(apdu)
    return command, reply


def _has_tag_85(apdu: bytes) -> bool:
    from card import tlv
    from card.errors import BadResponseError

    try:
        inner = tlv.unwrap(apdu[5 : 5 + apdu[4]], 0x7C)
        return any(tag == b"\x85" for tag, _ in tlv.parse(inner))
    except (BadResponseError, IndexError, ValueError):
        return True  # cannot tell: hide it


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


def redact(apdu: bytes, *, hide: bool | None = None) -> str:
    """Hex of a command APDU for the trace, with the data field of secret-bearing commands hidden
    (``hide``: force the decision, e.g. for every block of a chained secret command)."""
    if hide is None:
        hide = _command_is_secret(apdu)
    if len(apdu) >= 5 and hide:
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
        self.pin_verified = False
        """A VERIFY with a PIN succeeded on this connection (the trace then hides non-public objects)."""

    def _exchange(self, raw: bytes, hide: tuple[bool, bool]) -> tuple[bytes, int]:
        tracing = logger.isEnabledFor(TRAFFIC)
        if tracing:
            logger.log(TRAFFIC, "> %s", redact(raw, hide=hide[0]))
        try:
            data, sw = self.transport.transmit(raw)
        except CardRemovedError:
            self.card_removed = True
            raise
        self.apdus_sent += 1
        self.bytes_sent += len(raw)
        self.bytes_received += len(data) + 2
        if tracing:
            shown = f"<{len(data)} bytes redacted>" if hide[1] and data else data.hex(" ").upper()
            logger.log(TRAFFIC, "< %s %04X", shown, sw)
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
        sw: int = SW.OK
        blocks = cmd.chained()
        # One decision for the whole exchange: every block of a chain, the 6C resend and each GET
        # RESPONSE of the reply are traced as the command they belong to.
        hide = trace_policy(blocks[0], pin_verified=self.pin_verified)
        for raw in blocks:
            data, sw = self._exchange(raw, hide)
            if raw is not blocks[-1] and sw != SW_OK:
                return data, sw
        if family(sw) == SW.WRONG_LE:  # resend the same command with the card's Le, once
            last = blocks[-1]
            resend = last[:-1] + bytes([sw2(sw)]) if cmd.le is not None else last + bytes([sw2(sw)])
            data, sw = self._exchange(resend, hide)
        collected = bytearray(data)
        rounds = 0
        while True:
            if len(collected) > MAX_RESPONSE_BYTES:
                raise BadResponseError(f"the card's response is longer than {MAX_RESPONSE_BYTES} bytes; refused")
            if family(sw) != SW.BYTES_REMAINING:
                if cmd.ins == INS_VERIFY and cmd.data and sw == SW_OK:
                    self.pin_verified = True
                return bytes(collected), sw
            rounds += 1
            if rounds > MAX_GET_RESPONSE_ROUNDS:
                raise BadResponseError("card keeps sending 61XX: response too long")
            more, sw = self._exchange(bytes([0x00, INS.GET_RESPONSE, 0x00, 0x00, sw2(sw)]), (False, hide[1]))
            collected += more
