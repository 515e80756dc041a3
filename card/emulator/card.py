"""SoftPivCard: a PIV card at APDU level (SP 800-73-4 Part 2), with real state and fault injection.

Implements :class:`card.transport.CardTransport` for in-process use and
:meth:`SoftPivCard.process_apdu` for the vpcd server. See ``reference/piv-protocol.md`` §13
for the behaviours it reproduces (AID prefix SELECT, ``61 XX`` chunking, chaining,
PIN-always on 9C, 9B mutual/single authentication, size cap).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from card import tlv
from card.emulator.state import CardState, SlotKey
from card.errors import BadResponseError, CardRemovedError
from card.piv import PIV_AID, ManagementKeyAlgorithm, encode_public_key

logger = logging.getLogger(__name__)

_KEY_SLOTS = {0x9A, 0x9C, 0x9D, 0x9E}
_CERT_OBJECT_OVERHEAD = 9
"""``70 82 LL LL`` + ``71 01 00`` + ``FE 00``: a certificate of ``max_object_bytes`` fits with its tags."""
_OBJECT_READ_NEEDS_PIN = {"5FC103", "5FC108", "5FC109", "5FC121"}


class CardStatus(Exception):
    """Raised inside a handler to answer with a status word."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


class CardDropped(Exception):
    """Fault injection: the card has just been pulled (the server closes its connection)."""


@dataclass
class CardFaults:
    """Fault injection switches.

    Attributes:
        drop_after_apdus: process this many commands, then the card is gone (None: never).
        drop_at: pull the card when the N-th command of a named renewal step arrives, before
            it is applied: ``{"generate": 2}`` pulls it at the second GENERATE. Step names are
            :data:`FAULT_STEPS` (a chained command counts once).
        drop_at_put_data: shorthand for ``drop_at={"put-data": N}``.
        delays_s: seconds to sleep before answering, per INS byte (e.g. ``{0x47: 10.0}``).
        reinsert_after_s: after a fault-injected pull, put the card back after this many seconds
            unless it was re-inserted meanwhile (the demo's "the holder puts the card back").
    """

    drop_after_apdus: int | None = None
    drop_at: dict[str, int] = field(default_factory=dict)
    drop_at_put_data: int | None = None
    delays_s: dict[int, float] = field(default_factory=dict)
    reinsert_after_s: float | None = None

    def __post_init__(self) -> None:
        if self.drop_at_put_data is not None:
            self.drop_at.setdefault("put-data", self.drop_at_put_data)
        unknown = set(self.drop_at) - set(FAULT_STEPS)
        if unknown:
            raise ValueError(f"unknown fault step(s) {sorted(unknown)}; choose from {', '.join(FAULT_STEPS)}")


FAULT_STEPS = ("select", "verify", "mgmt-auth", "generate", "sign", "put-data", "get-data")
"""Named renewal steps at which the card can be pulled (see :attr:`CardFaults.drop_at`)."""


def fault_step(ins: int, p2: int, data: bytes) -> str | None:
    """The :data:`FAULT_STEPS` name of a (reassembled) command, or None."""
    if ins == 0x87:
        return "mgmt-auth" if p2 == 0x9B else "sign"
    return {0xA4: "select", 0x20: "verify" if data else None, 0x47: "generate", 0xDB: "put-data",
            0xCB: "get-data"}.get(ins)


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
        self._pin_just_verified = False
        self._mgmt_pending: tuple[str, int, bytes] | None = None
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
                data, sw = b"", 0x6A80
            self.trace.append((apdu, sw))
            return data + sw.to_bytes(2, "big")

    def _parse(self, apdu: bytes) -> tuple[int, int, int, int, bytes, int | None]:
        if len(apdu) < 4:
            raise CardStatus(0x6700)
        cla, ins, p1, p2 = apdu[:4]
        body = apdu[4:]
        if not body:
            return cla, ins, p1, p2, b"", None
        if len(body) == 1:
            return cla, ins, p1, p2, b"", body[0] or 256
        if body[0] == 0 and len(body) >= 3:  # extended length
            lc = int.from_bytes(body[1:3], "big")
            data = body[3 : 3 + lc]
            if len(data) != lc:
                raise CardStatus(0x6700)
            rest = body[3 + lc :]
            le = (int.from_bytes(rest, "big") or 65536) if rest else None
            return cla, ins, p1, p2, data, le
        lc = body[0]
        data = body[1 : 1 + lc]
        if len(data) != lc:
            raise CardStatus(0x6700)
        rest = body[1 + lc :]
        if len(rest) > 1:
            raise CardStatus(0x6700)
        le = (rest[0] or 256) if rest else None
        return cla, ins, p1, p2, data, le

    def _respond(self, data: bytes, le: int | None) -> tuple[bytes, int]:
        chunk = min(256, le or 256)
        if len(data) <= chunk:
            self._pending_response = b""
            return data, 0x9000
        self._pending_response = data[chunk:]
        remaining = len(self._pending_response)
        return data[:chunk], 0x6100 | (0 if remaining >= 256 else remaining)

    def _dispatch(self, apdu: bytes) -> tuple[bytes, int]:
        cla, ins, p1, p2, data, le = self._parse(apdu)
        if ins == 0xC0:
            if not self._pending_response:
                raise CardStatus(0x6985)
            return self._respond(self._pending_response, le)
        self._pending_response = b""
        pin_just_verified = self._pin_just_verified
        self._pin_just_verified = False
        if cla & 0x10:
            if self._chain and self._chain[:3] != (ins, p1, p2):
                self._chain = None
            prev = self._chain[3] if self._chain else b""
            self._chain = (ins, p1, p2, prev + data)
            self._pin_just_verified = pin_just_verified  # a chain continues one logical command
            return b"", 0x9000
        if self._chain:
            if self._chain[:3] == (ins, p1, p2):
                data = self._chain[3] + data
            self._chain = None
        step = fault_step(ins, p2, data)
        if step is not None:
            self.step_counts[step] = self.step_counts.get(step, 0) + 1
            limit = self.faults.drop_at.get(step)
            if limit is not None and self.step_counts[step] >= limit:
                self.remove()
                raise CardDropped()
        handler: Callable[[int, int, bytes, int | None, bool], tuple[bytes, int]] | None = {
            0xA4: self._select,
            0xCB: self._get_data,
            0xDB: self._put_data,
            0x20: self._verify,
            0x24: self._change_reference,
            0x2C: self._reset_retry,
            0x87: self._general_authenticate,
            0x47: self._generate,
        }.get(ins)
        if handler is None and self.state.yubico_version is not None:
            handler = {0xF7: self._get_metadata, 0xFD: self._get_version, 0xF8: self._get_serial}.get(ins)
        if handler is None:
            raise CardStatus(0x6D00)
        if cla & ~0x10 not in (0x00,):
            raise CardStatus(0x6E00)
        resp, sw = handler(p1, p2, data, le, pin_just_verified)
        if sw == 0x9000 and resp:
            return self._respond(resp, le)
        return resp, sw

    def _save(self) -> None:
        if self.state_path is not None:
            self.state.save(self.state_path)

    # -- SELECT ----------------------------------------------------------------------
    def _select(self, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> tuple[bytes, int]:
        if p1 != 0x04 or len(data) < 5 or not PIV_AID.startswith(data[: len(PIV_AID)]):
            raise CardStatus(0x6A82)  # another AID: stay selected, keep state (OpenSC probes)
        self.selected = True
        apt = tlv.tlv(0x4F, PIV_AID[5:]) + tlv.tlv(0x79, tlv.tlv(0x4F, PIV_AID[:5]))
        apt += tlv.tlv(0x50, b"cardrenew SoftPIV")
        algs = b"".join(tlv.tlv(0x80, bytes([a])) for a in self.state.supported_key_types) + tlv.tlv(0x06, b"\x00")
        apt += tlv.tlv(0xAC, algs)
        return tlv.tlv(0x61, apt), 0x9000

    # -- Yubico extensions (profile yubikey5) -----------------------------------------------
    def _get_version(self, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> tuple[bytes, int]:
        assert self.state.yubico_version is not None
        return bytes(self.state.yubico_version), 0x9000

    def _get_serial(self, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> tuple[bytes, int]:
        return self.state.serial.to_bytes(4, "big"), 0x9000

    def _get_metadata(self, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> tuple[bytes, int]:
        """``F7`` metadata (piv-protocol.md §3.2): 01 algorithm, 02 policy, 03 origin, 04 public key, 05 default, 06 retries."""
        if p2 == 0x9B:
            return (tlv.tlv(0x01, bytes([self.state.management_key_algorithm])) + tlv.tlv(0x02, b"\x00\x01")
                    + tlv.tlv(0x05, bytes([int(self.state.management_key_is_default)]))), 0x9000
        if p2 in (0x80, 0x81):
            is_pin = p2 == 0x80
            default = (self.state.pin == "123456") if is_pin else (self.state.puk == "12345678")
            total = self.state.pin_max_retries if is_pin else self.state.puk_max_retries
            left = self.state.pin_retries if is_pin else self.state.puk_retries
            return tlv.tlv(0x05, bytes([int(default)])) + tlv.tlv(0x06, bytes([total, left])), 0x9000
        if p2 in _KEY_SLOTS:
            entry = self.state.keys.get(f"{p2:02X}")
            if entry is None:
                raise CardStatus(0x6A88)
            key_type, key = self._private_key(p2)
            policy = {"never": 1, "once": 2, "always": 3}[self.state.pin_policy.get(f"{p2:02X}", "once")]
            pub = tlv.unwrap(encode_public_key(key.public_key()), b"\x7f\x49")
            return (tlv.tlv(0x01, bytes([key_type])) + tlv.tlv(0x02, bytes([policy, 1])) + tlv.tlv(0x03, b"\x01")
                    + tlv.tlv(0x04, pub)), 0x9000
        raise CardStatus(0x6A88)

    # -- objects -----------------------------------------------------------------------
    def _object_tag(self, data: bytes) -> str:
        items = tlv.parse(data)
        if not items or items[0][0] != b"\x5c":
            raise CardStatus(0x6A80)
        return items[0][1].hex().upper()

    def _get_data(self, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> tuple[bytes, int]:
        if (p1, p2) != (0x3F, 0xFF):
            raise CardStatus(0x6A86)
        tag = self._object_tag(data)
        if tag in _OBJECT_READ_NEEDS_PIN and not self.pin_verified:
            raise CardStatus(0x6982)
        value = self.state.objects.get(tag)
        if value is None:
            raise CardStatus(0x6A82)
        wrap = 0x7E if tag == "7E" else 0x53
        return tlv.tlv(wrap, bytes.fromhex(value)), 0x9000

    def _put_data(self, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> tuple[bytes, int]:
        if (p1, p2) != (0x3F, 0xFF):
            raise CardStatus(0x6A86)
        if not self.mgmt_authenticated:
            raise CardStatus(0x6982)
        items = tlv.parse(data)
        if len(items) != 2 or items[0][0] != b"\x5c" or items[1][0] not in (b"\x53", b"\x7e"):
            raise CardStatus(0x6A80)
        tag = items[0][1].hex().upper()
        value = items[1][1]
        if len(value) > self.state.max_object_bytes + _CERT_OBJECT_OVERHEAD:  # F05: capacity
            raise CardStatus(0x6A84)
        if value:
            self.state.objects[tag] = value.hex().upper()
        else:
            self.state.objects.pop(tag, None)
        self._save()
        return b"", 0x9000

    # -- PIN / PUK -----------------------------------------------------------------------
    @staticmethod
    def _padded(secret: str) -> bytes:
        return secret.encode("utf-8").ljust(8, b"\xff")

    def _verify(self, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> tuple[bytes, int]:
        if p2 != 0x80:
            raise CardStatus(0x6A88)
        if p1 == 0xFF:
            self.pin_verified = False
            return b"", 0x9000
        if not data:
            if self.state.pin_retries == 0:
                raise CardStatus(0x6983)
            return b"", (0x9000 if self.pin_verified else 0x63C0 | self.state.pin_retries)
        if len(data) != 8:
            raise CardStatus(0x6A80)
        if self.state.pin_retries == 0:
            raise CardStatus(0x6983)
        if hmac.compare_digest(data, self._padded(self.state.pin)):
            changed = self.state.pin_retries != self.state.pin_max_retries
            self.state.pin_retries = self.state.pin_max_retries
            self.pin_verified = True
            self._pin_just_verified = True
            if changed:
                self._save()
            return b"", 0x9000
        self.pin_verified = False
        self.state.pin_retries -= 1
        self._save()
        return b"", 0x63C0 | self.state.pin_retries

    def _change_reference(self, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> tuple[bytes, int]:
        if p2 not in (0x80, 0x81) or len(data) != 16:
            raise CardStatus(0x6A80)
        is_pin = p2 == 0x80
        retries = self.state.pin_retries if is_pin else self.state.puk_retries
        if retries == 0:
            raise CardStatus(0x6983)
        current = self.state.pin if is_pin else self.state.puk
        if not hmac.compare_digest(data[:8], self._padded(current)):
            if is_pin:
                self.state.pin_retries -= 1
            else:
                self.state.puk_retries -= 1
            self._save()
            return b"", 0x63C0 | (retries - 1)
        new = data[8:].rstrip(b"\xff").decode("utf-8", "replace")
        if is_pin:
            self.state.pin, self.state.pin_retries = new, self.state.pin_max_retries
        else:
            self.state.puk, self.state.puk_retries = new, self.state.puk_max_retries
        self._save()
        return b"", 0x9000

    def _reset_retry(self, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> tuple[bytes, int]:
        if p2 != 0x80 or len(data) != 16:
            raise CardStatus(0x6A80)
        if self.state.puk_retries == 0:
            raise CardStatus(0x6983)
        if not hmac.compare_digest(data[:8], self._padded(self.state.puk)):
            self.state.puk_retries -= 1
            self._save()
            return b"", 0x63C0 | self.state.puk_retries
        self.state.pin = data[8:].rstrip(b"\xff").decode("utf-8", "replace")
        self.state.pin_retries = self.state.pin_max_retries
        self.state.puk_retries = self.state.puk_max_retries
        self._save()
        return b"", 0x9000

    # -- GENERAL AUTHENTICATE ----------------------------------------------------------
    def _general_authenticate(self, p1: int, p2: int, data: bytes, le: int | None, pv: bool) -> tuple[bytes, int]:
        try:
            items = tlv.parse_dict(tlv.unwrap(data, 0x7C))
        except BadResponseError:
            raise CardStatus(0x6A80) from None
        if p2 == 0x9B:
            return self._mgmt_auth(p1, items)
        if p2 not in _KEY_SLOTS:
            raise CardStatus(0x6A86)
        return self._sign(p1, p2, items, pv)

    def _mgmt_auth(self, p1: int, items: dict[bytes, bytes]) -> tuple[bytes, int]:
        alg = self.state.management_key_algorithm
        if p1 not in (alg, 0x00, 0x01) or (p1 in (0x00, 0x01) and alg != 0x03):
            self._mgmt_pending = None
            raise CardStatus(0x6A80)
        mk = ManagementKeyAlgorithm(alg)
        cipher = mk.cipher(bytes.fromhex(self.state.management_key))
        block = mk.block_bytes

        def enc(b: bytes) -> bytes:
            e = cipher.encryptor()
            return e.update(b) + e.finalize()

        pending, self._mgmt_pending = self._mgmt_pending, None
        witness, challenge, response = items.get(b"\x80"), items.get(b"\x81"), items.get(b"\x82")
        if witness == b"" and challenge is None:  # mutual, step 1
            w = os.urandom(block)
            self._mgmt_pending = ("witness", alg, w)
            return tlv.tlv(0x7C, tlv.tlv(0x80, enc(w))), 0x9000
        if challenge == b"" and witness is None:  # single, step 1
            c = os.urandom(block)
            self._mgmt_pending = ("challenge", alg, c)
            return tlv.tlv(0x7C, tlv.tlv(0x81, c)), 0x9000
        if witness and challenge is not None and pending and pending[0] == "witness":
            if len(challenge) != block or not hmac.compare_digest(witness, pending[2]):
                self.mgmt_authenticated = False
                raise CardStatus(0x6982)
            self.mgmt_authenticated = True
            return tlv.tlv(0x7C, tlv.tlv(0x82, enc(challenge))), 0x9000
        if response and pending and pending[0] == "challenge":
            if not hmac.compare_digest(response, enc(pending[2])):
                self.mgmt_authenticated = False
                raise CardStatus(0x6982)
            self.mgmt_authenticated = True
            return b"", 0x9000
        self.mgmt_authenticated = False
        raise CardStatus(0x6A80)

    def _private_key(self, slot: int) -> tuple[int, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]:
        entry = self.state.keys.get(f"{slot:02X}")
        if entry is None:
            raise CardStatus(0x6A88)
        key = serialization.load_pem_private_key(entry.private_pem.encode(), None)
        assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
        return entry.key_type, key

    def _sign(self, alg: int, slot: int, items: dict[bytes, bytes], pin_just_verified: bool) -> tuple[bytes, int]:
        key_type, key = self._private_key(slot)
        if alg != key_type:
            raise CardStatus(0x6A80)
        policy = self.state.pin_policy.get(f"{slot:02X}", "once")
        if policy == "always" and not pin_just_verified:
            raise CardStatus(0x6982)
        if policy == "once" and not self.pin_verified:
            raise CardStatus(0x6982)
        block = items.get(b"\x81")
        if items.get(b"\x82") != b"" or block is None:
            raise CardStatus(0x6A80)
        if isinstance(key, rsa.RSAPrivateKey):
            if len(block) != key.key_size // 8:
                raise CardStatus(0x6A80)
            nums = key.private_numbers()
            m = int.from_bytes(block, "big")
            if m >= nums.public_numbers.n:
                raise CardStatus(0x6A80)
            sig = pow(m, nums.d, nums.public_numbers.n).to_bytes(key.key_size // 8, "big")
        else:
            size = (key.curve.key_size + 7) // 8
            if len(block) != size:
                raise CardStatus(0x6A80)
            digest_alg: hashes.HashAlgorithm = hashes.SHA256() if size == 32 else hashes.SHA384()
            sig = key.sign(block, ec.ECDSA(Prehashed(digest_alg)))
        return tlv.tlv(0x7C, tlv.tlv(0x82, sig)), 0x9000

    # -- GENERATE ---------------------------------------------------------------------
    def _generate(self, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> tuple[bytes, int]:
        if p2 not in _KEY_SLOTS:
            raise CardStatus(0x6A86)
        if not self.mgmt_authenticated:
            raise CardStatus(0x6982)
        try:
            params = tlv.parse_dict(tlv.unwrap(data, 0xAC))
        except BadResponseError:
            raise CardStatus(0x6A80) from None
        alg_raw = params.get(b"\x80")
        if not alg_raw or len(alg_raw) != 1 or alg_raw[0] not in self.state.supported_key_types:
            raise CardStatus(0x6A80)
        alg = alg_raw[0]
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if alg == 0x07:
            key = rsa.generate_private_key(65537, 2048)
        elif alg == 0x11:
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = ec.generate_private_key(ec.SECP384R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        self.state.keys[f"{p2:02X}"] = SlotKey(alg, pem)
        self._save()
        return encode_public_key(key.public_key()), 0x9000


def install_key(state: CardState, slot: int, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, key_type: int) -> None:
    """Put a host-generated private key into a card state (used when creating test cards)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    state.keys[f"{slot:02X}"] = SlotKey(key_type, pem)


def state_digest(state: CardState) -> str:
    """SHA-256 of the state JSON (tests use it to prove 'nothing changed on the card')."""
    return hashlib.sha256(state.to_json().encode()).hexdigest()
