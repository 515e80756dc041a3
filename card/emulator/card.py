"""SoftPivCard: a PIV card at APDU level (SP 800-73-4 Part 2), with real state and fault injection.

Implements :class:`card.transport.CardTransport` for in-process use and
:meth:`SoftPivCard.process_apdu` for the vpcd server. See ``reference/piv-protocol.md`` §13
for the behaviours it reproduces (AID prefix SELECT, ``61 XX`` chunking, chaining,
PIN-always on 9C, 9B mutual/single authentication, size cap).

The commands live in :mod:`card.emulator.objects` (SELECT, GET/PUT DATA, Yubico version and
serial), :mod:`card.emulator.pin` (VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER) and
:mod:`card.emulator.keys` (GENERAL AUTHENTICATE, GENERATE, Yubico metadata); :data:`PIV_COMMANDS`
and :data:`YUBICO_COMMANDS` map each :class:`card.apdu.INS` to its handler, once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from card.apdu import INS
from card.emulator import keys, objects, pin
from card.emulator.commands import CardStatus, Handler, Response, parse_command
from card.emulator.faults import FAULT_STEPS, CardDropped, CardFaults, fault_step
from card.emulator.state import CardState, SlotKey
from card.errors import BadResponseError, CardRemovedError
from card.sw import SW

logger = logging.getLogger(__name__)

__all__ = ["FAULT_STEPS", "PIV_COMMANDS", "YUBICO_COMMANDS", "CardDropped", "CardFaults", "CardStatus",
           "SoftPivCard", "fault_step", "install_key", "state_digest"]

PIV_COMMANDS: Mapping[int, Handler] = MappingProxyType({
    INS.SELECT: objects.select,
    INS.GET_DATA: objects.get_data,
    INS.PUT_DATA: objects.put_data,
    INS.VERIFY: pin.verify,
    INS.CHANGE_REFERENCE_DATA: pin.change_reference,
    INS.RESET_RETRY_COUNTER: pin.reset_retry,
    INS.GENERAL_AUTHENTICATE: keys.general_authenticate,
    INS.GENERATE_ASYMMETRIC_KEY_PAIR: keys.generate,
})
"""The PIV instructions every profile answers (SP 800-73-4 Part 2 §3)."""

YUBICO_COMMANDS: Mapping[int, Handler] = MappingProxyType({
    INS.GET_METADATA: keys.get_metadata,
    INS.GET_VERSION: objects.get_version,
    INS.GET_SERIAL: objects.get_serial,
})
"""The Yubico extensions, answered only by a profile with a ``yubico_version``; others: ``6D 00``."""


class SoftPivCard:
    """A software PIV card.

    Args:
        state: the persistent state; ``state_path``: where it is saved after each change
            (None: memory only); ``faults``: fault injection.
    """

    def __init__(self, state: CardState, state_path: Path | None = None, faults: CardFaults | None = None,
                 name: str = "Soft PIV card (in process)") -> None:
        self.state = state
        self.state_path = Path(state_path) if state_path else None
        self.faults = faults or CardFaults()
        self.name = name
        self.apdu_count = 0
        self.insertions = 0
        """How many times the card was (re-)inserted; lets a watcher see a quick pull-and-reinsert."""
        self.step_counts: dict[str, int] = {}
        """How many commands of each :data:`FAULT_STEPS` step the card has received."""
        self.present = True
        self.trace: list[tuple[bytes, int]] = []
        """(command APDU, SW) of every command processed; used by tests and benchmarks."""
        self._lock = threading.RLock()
        self._power_reset()

    @classmethod
    def from_file(cls, path: Path, faults: CardFaults | None = None) -> SoftPivCard:
        """Open a card state file (made by ``cardrenew emulator create``)."""
        return cls(CardState.load(Path(path)), Path(path), faults)

    # -- power and presence ---------------------------------------------------------------
    @property
    def atr(self) -> bytes:
        return bytes.fromhex(self.state.atr)

    def _power_reset(self) -> None:
        self.pin_verified = False
        self.mgmt_authenticated = False
        self.pin_just_verified = False
        """The last command was a successful VERIFY (a PIN-always slot signs only then)."""
        self.mgmt_pending: tuple[str, int, bytes] | None = None
        """The management-key protocol's first step: ("witness" | "challenge", algorithm, block)."""
        self._chain: tuple[int, int, int, bytes] | None = None
        self._pending_response = b""
        self.selected = True  # PIV is the default application (OpenSC 0.23 reads 7E first)

    def power_on(self) -> None:
        with self._lock:
            self._power_reset()

    power_off = power_on
    reset = power_on

    def remove(self) -> None:
        """Pull the card: every later command fails until :meth:`insert`."""
        with self._lock:
            self.present = False
            self._power_reset()
            delay = self.faults.reinsert_after_s
            if delay is not None:
                expected = self.insertions

                def put_back() -> None:
                    with self._lock:
                        if not self.present and self.insertions == expected:
                            self.insert()

                timer = threading.Timer(delay, put_back)
                timer.daemon = True
                timer.start()

    def insert(self) -> None:
        """Put the card back (powered up fresh; fault counters cleared)."""
        with self._lock:
            self.present = True
            self.insertions += 1
            self.faults = CardFaults(delays_s=self.faults.delays_s)
            self.step_counts = {}
            self._power_reset()

    def presence(self) -> tuple[bool, int]:
        """(present, insertions), for :meth:`card.service.CardService.watch`."""
        return self.present, self.insertions

    # -- CardTransport -----------------------------------------------------------------
    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """CardTransport.transmit. Raises CardRemovedError once the card is pulled."""
        try:
            resp = self.process_apdu(apdu)
        except CardDropped as exc:
            raise CardRemovedError("the card was removed") from exc
        return resp[:-2], int.from_bytes(resp[-2:], "big")

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def close(self) -> None:
        self.power_off()

    def save(self) -> None:
        """Write the state file (if any) after a change."""
        if self.state_path is not None:
            self.state.save(self.state_path)

    # -- APDU processing -----------------------------------------------------------------
    def process_apdu(self, apdu: bytes) -> bytes:
        """Run one command APDU; returns response data + SW1 SW2.

        Raises:
            CardDropped: the card is (now) pulled by fault injection.
        """
        with self._lock:
            if not self.present:
                raise CardDropped()
            limit = self.faults.drop_after_apdus
            if limit is not None and self.apdu_count >= limit:
                self.remove()
                raise CardDropped()
            self.apdu_count += 1
            delay = self.faults.delays_s.get(apdu[1] if len(apdu) > 1 else -1)
            if delay:
                time.sleep(delay)
            try:
                data, sw = self._dispatch(apdu)
            except CardStatus as st:
                data, sw = b"", st.sw
            except BadResponseError:
                data, sw = b"", SW.INCORRECT_DATA
            sw = int(sw)  # a plain int in the trace, as a reader's SW1SW2
            self.trace.append((apdu, sw))
            return data + sw.to_bytes(2, "big")

    def _respond(self, data: bytes, le: int | None) -> Response:
        chunk = min(256, le or 256)
        if len(data) <= chunk:
            self._pending_response = b""
            return data, SW.OK
        self._pending_response = data[chunk:]
        remaining = len(self._pending_response)
        return data[:chunk], SW.BYTES_REMAINING | (0 if remaining >= 256 else remaining)

    def _dispatch(self, apdu: bytes) -> Response:
        cla, ins, p1, p2, data, le = parse_command(apdu)
        if ins == INS.GET_RESPONSE:
            if not self._pending_response:
                raise CardStatus(SW.CONDITIONS_NOT_SATISFIED)
            return self._respond(self._pending_response, le)
        self._pending_response = b""
        pin_just_verified = self.pin_just_verified
        self.pin_just_verified = False
        if cla & 0x10:
            if self._chain and self._chain[:3] != (ins, p1, p2):
                self._chain = None
            prev = self._chain[3] if self._chain else b""
            self._chain = (ins, p1, p2, prev + data)
            self.pin_just_verified = pin_just_verified  # a chain continues one logical command
            return b"", SW.OK
        if self._chain:
            if self._chain[:3] == (ins, p1, p2):
                data = self._chain[3] + data
            self._chain = None
        self._count_step(ins, p2, data)
        handler = PIV_COMMANDS.get(ins)
        if handler is None and self.state.yubico_version is not None:
            handler = YUBICO_COMMANDS.get(ins)
        if handler is None:
            raise CardStatus(SW.INS_NOT_SUPPORTED)
        if cla & ~0x10 not in (0x00,):
            raise CardStatus(SW.CLA_NOT_SUPPORTED)
        resp, sw = handler(self, p1, p2, data, le, pin_just_verified)
        if sw == SW.OK and resp:
            return self._respond(resp, le)
        return resp, sw

    def _count_step(self, ins: int, p2: int, data: bytes) -> None:
        """Count the command's :data:`FAULT_STEPS` step; pull the card when its fault says so."""
        step = fault_step(ins, p2, data)
        if step is not None:
            self.step_counts[step] = self.step_counts.get(step, 0) + 1
            limit = self.faults.drop_at.get(step)
            if limit is not None and self.step_counts[step] >= limit:
                self.remove()
                raise CardDropped()


def install_key(state: CardState, slot: int, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, key_type: int) -> None:
    """Put a host-generated private key into a card state (used when creating test cards)."""
    state.keys[f"{slot:02X}"] = SlotKey(key_type, keys.private_pem(key))


def state_digest(state: CardState) -> str:
    """SHA-256 of the state JSON (tests use it to prove 'nothing changed on the card')."""
    return hashlib.sha256(state.to_json().encode()).hexdigest()
