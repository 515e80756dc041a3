"""Persistent state of the software PIV card, kept as JSON and written atomically."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from card.atomic import write_atomic

STATE_VERSION = 1


def _atr_with_tck(body: bytes) -> bytes:
    tck = 0
    for b in body[1:]:
        tck ^= b
    return body + bytes([tck])


YUBIKEY5_ATR = "3BFD1300008131FE158073C021C057597562694B657940"
"""YubiKey 5 (NFC) ATR (piv-protocol.md §8): OpenSC takes its Yubico path and sends ``FD``."""

DEFAULT_ATR = _atr_with_tck(bytes.fromhex("3BF81300008131FE15") + b"SoftPIV1").hex().upper()
"""A T=1 ATR in no OpenSC table (so OpenSC takes its generic PIV path); ends with TCK."""


@dataclass
class SlotKey:
    """One private key held by the card (PKCS#8 PEM, unencrypted: this is a test card)."""

    key_type: int
    private_pem: str


CardReferenceData = str
"""What the software card itself stores to check a PIN, PUK or management key (hex for the key):
the card's side of VERIFY, kept in clear in its state file like its private keys, because this is
a test card (DESIGN §6). Never a holder's input: that is a :class:`card.secret.Secret`."""


@dataclass
class CardState:
    """Everything the card remembers across power cycles."""

    pin: CardReferenceData = "123456"
    puk: CardReferenceData = "12345678"
    pin_retries: int = 3
    pin_max_retries: int = 3
    puk_retries: int = 3
    puk_max_retries: int = 3
    management_key_algorithm: int = 0x03
    management_key: CardReferenceData = "010203040506070801020304050607080102030405060708"
    atr: str = DEFAULT_ATR
    profile: str = "piv"
    max_object_bytes: int = 3052
    pin_policy: dict[str, str] = field(default_factory=lambda: {"9A": "once", "9C": "always", "9D": "once", "9E": "never"})
    supported_key_types: list[int] = field(default_factory=lambda: [0x07, 0x11, 0x14])
    yubico_version: list[int] | None = None
    """Firmware version answered to the Yubico ``FD``/``F7``/``F8`` extensions (None: ``6D 00``, a non-Yubico card)."""
    serial: int = 0x009AE9C8
    """Answered to Yubico GET SERIAL (``F8``) when :attr:`yubico_version` is set."""
    management_key_is_default: bool = True
    """Metadata tag ``05`` of the ``9B`` key (the factory key is still in place)."""
    keys: dict[str, SlotKey] = field(default_factory=dict)
    objects: dict[str, str] = field(default_factory=dict)
    """Object tag (hex, upper) → value inside ``53`` (hex)."""
    version: int = STATE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CardState:
        raw = json.loads(text)
        raw["keys"] = {slot: SlotKey(**key) for slot, key in raw.get("keys", {}).items()}
        return cls(**raw)

    @classmethod
    def load(cls, path: Path) -> CardState:
        """Read a state file. Raises OSError / ValueError when it is missing or malformed."""
        return cls.from_json(path.read_text(encoding="utf-8"))

    def save(self, path: Path) -> None:
        """Write atomically (mode 0600): after any crash the file is the old state or the new one."""
        write_atomic(Path(path), self.to_json())
