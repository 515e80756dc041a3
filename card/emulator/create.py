"""Make a software PIV card whose 9A and 9C certificates come from an embedded CA."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Required, TypedDict

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from card.certificates import encode_certificate_object
from card.emulator.card import install_key
from card.emulator.state import YUBIKEY5_ATR, CardReferenceData, CardState
from card.enrollment.local import LocalCA
from card.piv import OBJECT_CHUID, OBJECT_DISCOVERY, KeyType, ManagementKeyAlgorithm, Slot, build_chuid

DISCOVERY_VALUE = bytes.fromhex("4F0BA0000003080000100001005F2F024000")
"""Discovery object: PIV AID, PIN usage policy "PIV PIN only" (SP 800-73-4 Part 1 §3.3.2)."""


class Profile(TypedDict, total=False):
    """What an emulator profile sets in :class:`CardState` (the rest keeps its defaults)."""

    management_key_algorithm: Required[ManagementKeyAlgorithm]
    max_object_bytes: Required[int]
    supported_key_types: Required[list[KeyType]]
    atr: str
    yubico_version: list[int]


PROFILES: dict[str, Profile] = {
    # A plain SP 800-73-4 card: 3DES management key, no vendor extensions (F7/FD/F8 → 6D 00).
    "piv": {"management_key_algorithm": ManagementKeyAlgorithm.TDES, "max_object_bytes": 3052,
            "supported_key_types": [KeyType.RSA2048, KeyType.ECCP256, KeyType.ECCP384]},
    # YubiKey 5.7: AES-192 default management key, F7 metadata, FD version, F8 serial, 3052-byte objects.
    "yubikey5": {"management_key_algorithm": ManagementKeyAlgorithm.AES192, "max_object_bytes": 3052,
                 "supported_key_types": [KeyType.RSA2048, KeyType.ECCP256, KeyType.ECCP384],
                 "atr": YUBIKEY5_ATR, "yubico_version": [5, 7, 1]},
    # YubiKey 5.4: 3DES default management key (before 5.7), F7 metadata, FD version, F8 serial.
    # What Yubico's ykcs11 2.2.0 (3DES only; RSA generation asks FD first) can write to.
    "yubikey54": {"management_key_algorithm": ManagementKeyAlgorithm.TDES, "max_object_bytes": 3052,
                  "supported_key_types": [KeyType.RSA2048, KeyType.ECCP256, KeyType.ECCP384],
                  "atr": YUBIKEY5_ATR, "yubico_version": [5, 4, 3]},
    # An older PIV card: 1856-byte objects (SP 800-73 certificate cap), 3DES only, RSA-2048 only.
    "legacy": {"management_key_algorithm": ManagementKeyAlgorithm.TDES, "max_object_bytes": 1856,
               "supported_key_types": [KeyType.RSA2048]},
}
"""Emulator profiles for ``cardrenew emulator create --profile NAME`` (issue 3 item 2)."""


def profile_state(profile: str = "piv", *, management_key: bytes | None = None,
                  pin: CardReferenceData = "123456") -> CardState:
    """An empty card state configured as ``profile``, with the default (or the given) management key.

    Raises:
        ValueError: unknown profile, or a management key whose length does not fit the profile's algorithm.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown emulator profile {profile!r}; choose from {', '.join(PROFILES)}")
    spec = PROFILES[profile]
    alg = spec["management_key_algorithm"]
    state = CardState(pin=pin, profile=profile, management_key_algorithm=int(alg),
                      max_object_bytes=spec["max_object_bytes"],
                      supported_key_types=[int(k) for k in spec["supported_key_types"]])
    if "atr" in spec:
        state.atr = spec["atr"]
    if "yubico_version" in spec:
        state.yubico_version = list(spec["yubico_version"])
    if management_key is not None:
        if len(management_key) != alg.key_bytes:
            raise ValueError(f"a {alg.name} management key is {alg.key_bytes} bytes, got {len(management_key)}")
        state.management_key = management_key.hex().upper()
        state.management_key_is_default = False
    return state


def create_card_state(ca: LocalCA, *, expires_in_days: int = 30, pin: CardReferenceData = "123456",
                      key_type: KeyType = KeyType.RSA2048, holder: str = "Alex Example",
                      organisation: str = "Example Health Trust", email: str | None = "alex.example@example.org",
                      slots: tuple[Slot, ...] = (Slot.AUTHENTICATION, Slot.SIGNATURE),
                      now: dt.datetime | None = None, guid: bytes | None = None, profile: str = "piv",
                      management_key: bytes | None = None, usage: str = "piv") -> CardState:
    """A card state with keys and CA-issued certificates in ``slots`` expiring in ``expires_in_days`` days.

    The certificates were issued two years before they expire (clamped to the CA's start).
    ``guid`` (16 bytes) fixes the CHUID GUID (default: random), ``now`` the clock (aware UTC).
    ``profile`` is one of :data:`PROFILES`; ``management_key`` replaces the default key (in the
    profile's algorithm). ``usage`` is the certificates' key usage profile (see
    :meth:`card.enrollment.local.LocalCA.issue_initial`).

    Raises:
        ValueError: unknown profile, a key type the profile does not support, a wrong-length key.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    state = profile_state(profile, management_key=management_key, pin=pin)
    if int(key_type) not in state.supported_key_types:
        raise ValueError(f"profile {profile!r} does not support {key_type.name}")
    not_after = now + dt.timedelta(days=expires_in_days)
    not_before = not_after - dt.timedelta(days=730)
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, holder),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
    ])
    for slot in slots:
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if key_type is KeyType.RSA2048:
            key = rsa.generate_private_key(65537, 2048)
        elif key_type is KeyType.ECCP256:
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = ec.generate_private_key(ec.SECP384R1())
        install_key(state, slot, key, key_type)
        cert = ca.issue_initial(subject, key.public_key(), slot.hex, not_before, not_after, email, usage=usage)
        state.objects[slot.object_id.hex().upper()] = encode_certificate_object(cert.public_bytes(Encoding.DER)).hex().upper()
    chuid = build_chuid(guid or os.urandom(16), (now + dt.timedelta(days=5 * 365)).date())
    state.objects[OBJECT_CHUID.hex().upper()] = chuid.hex().upper()
    state.objects[OBJECT_DISCOVERY.hex().upper()] = DISCOVERY_VALUE.hex().upper()
    return state


def create_card_file(path: Path, ca: LocalCA, **kwargs: Any) -> CardState:
    """Create the card (``kwargs``: those of :func:`create_card_state`) and save it atomically to
    ``path`` (mode 0600)."""
    state = create_card_state(ca, **kwargs)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    state.save(Path(path))
    return state
