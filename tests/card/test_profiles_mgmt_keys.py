"""Issue 3 item 1: management keys 3DES/AES-128/192/256, F7 metadata, emulator profiles (F14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from card.config import Settings
from card.emulator.card import SoftPivCard
from card.emulator.create import PROFILES, create_card_state, profile_state
from card.emulator.state import YUBIKEY5_ATR
from card.enrollment.local import LocalCA
from card.errors import ManagementKeyError, NotSupportedError
from card.journal import AuditLog, JournalStore
from card.piv import DEFAULT_MANAGEMENT_KEY, KeyType, ManagementKeyAlgorithm, PivSession, Slot
from card.renewal import RenewalContext, renew
from card.secret import Secret

ALGS = list(ManagementKeyAlgorithm)


def session_on(state) -> tuple[SoftPivCard, PivSession]:  # type: ignore[no-untyped-def]
    card = SoftPivCard(state)
    s = PivSession(card)
    s.select()
    return card, s


@pytest.mark.parametrize("alg", ALGS, ids=[a.name for a in ALGS])
def test_every_management_key_algorithm_authenticates_and_a_wrong_key_is_refused(alg: ManagementKeyAlgorithm) -> None:
    key = os.urandom(alg.key_bytes)
    state = profile_state("piv")
    state.management_key_algorithm, state.management_key = int(alg), key.hex()
    card, s = session_on(state)
    s.authenticate(Secret(key), alg)
    assert card.mgmt_authenticated
    # the APDUs: P1 = algorithm, witness/challenge blocks of 8 (3DES) or 16 (AES) bytes
    first, second = [apdu for apdu, _ in card.trace if apdu[1] == 0x87]
    assert first[2] == alg == second[2] and first[5:9] == bytes.fromhex("7C028000")
    assert second[4] == 2 + 2 * (2 + alg.block_bytes)  # 7C L { 80 B <W> 81 B <C> }
    wrong = bytearray(key)
    wrong[0] ^= 0x02  # not bit 0: that is a DES parity bit, ignored by 3DES
    with pytest.raises(ManagementKeyError):
        s.authenticate(Secret(bytes(wrong)), alg)
    assert not card.mgmt_authenticated
    other = ManagementKeyAlgorithm.AES192 if alg is not ManagementKeyAlgorithm.AES192 else ManagementKeyAlgorithm.TDES
    with pytest.raises(ManagementKeyError, match="not " + other.name):  # F14: P1 does not match → 6A80
        s.authenticate(Secret(os.urandom(other.key_bytes)), other)
    with pytest.raises(ManagementKeyError, match="does not fit"):  # a key of the wrong length: no APDU
        s.authenticate(Secret(b"\x01" * (alg.key_bytes + 1)), alg)


def test_metadata_says_the_algorithm_on_yubikey5_and_6d00_elsewhere() -> None:
    card, s = session_on(profile_state("yubikey5"))
    assert s.get_management_key_algorithm() is ManagementKeyAlgorithm.AES192
    assert s.get_version() == (5, 7, 1)
    assert card.trace[-2][0] == bytes.fromhex("00F7009B00")
    for name in ("piv", "legacy"):
        card, s = session_on(profile_state(name))
        assert s.get_management_key_algorithm() is None and s.get_version() is None
        assert card.trace[-1][1] == 0x6D00


def test_metadata_without_tag_01_means_3des() -> None:
    class OldFirmware:
        name = "old"

        def transmit(self, apdu: bytes) -> tuple[bytes, int]:
            return bytes.fromhex("05 01 01".replace(" ", "")), 0x9000  # only "is default"

    assert PivSession(OldFirmware()).get_management_key_algorithm() is ManagementKeyAlgorithm.TDES  # type: ignore[arg-type]


def test_profiles() -> None:
    assert set(PROFILES) == {"piv", "yubikey5", "yubikey54", "legacy"}
    piv, yk, legacy = profile_state("piv"), profile_state("yubikey5"), profile_state("legacy")
    assert piv.management_key_algorithm == 0x03 and piv.yubico_version is None
    assert yk.management_key_algorithm == 0x0A and yk.atr == YUBIKEY5_ATR and yk.max_object_bytes == 3052
    assert 0x14 in yk.supported_key_types
    assert legacy.max_object_bytes == 1856 and legacy.supported_key_types == [0x07]
    for state in (piv, yk, legacy):
        assert bytes.fromhex(state.management_key) == DEFAULT_MANAGEMENT_KEY
    custom = profile_state("yubikey5", management_key=bytes(range(24)))
    assert custom.management_key == bytes(range(24)).hex().upper() and not custom.management_key_is_default
    with pytest.raises(ValueError, match="AES192 management key is 24 bytes"):
        profile_state("yubikey5", management_key=bytes(16))
    with pytest.raises(ValueError, match="unknown emulator profile"):
        profile_state("nitrokey")


def test_legacy_profile_cannot_make_ec_keys(ca: LocalCA) -> None:
    with pytest.raises(ValueError, match="does not support ECCP256"):
        create_card_state(ca, key_type=KeyType.ECCP256, profile="legacy")
    card, s = session_on(create_card_state(ca, profile="legacy"))
    s.authenticate(Secret(DEFAULT_MANAGEMENT_KEY))
    with pytest.raises(NotSupportedError, match="cannot generate ECCP384"):  # F13
        s.generate_key(Slot.AUTHENTICATION, KeyType.ECCP384)
    with pytest.raises(ManagementKeyError):  # 3DES only
        s.authenticate(Secret(DEFAULT_MANAGEMENT_KEY), ManagementKeyAlgorithm.AES192)


@pytest.mark.parametrize("key_type", [KeyType.RSA2048, KeyType.ECCP384])
def test_engine_asks_the_card_for_the_algorithm(ca: LocalCA, tmp_path: Path, key_type: KeyType) -> None:
    """Configured 3DES, card says AES-192 in F7: the engine uses the card's answer and renews."""
    card = SoftPivCard(create_card_state(ca, key_type=key_type, profile="yubikey5"))
    settings = Settings(state_dir=tmp_path / "state", management_key_algorithm=ManagementKeyAlgorithm.TDES)
    ctx = RenewalContext(settings, ca, JournalStore(settings.state_dir), AuditLog(settings.state_dir / "audit.log"))
    result = renew(PivSession(card), ctx, Secret("123456"))
    assert result.ok, result
    auth = [apdu for apdu, _ in card.trace if apdu[1] == 0x87 and apdu[3] == 0x9B]
    assert auth and all(apdu[2] == 0x0A for apdu in auth)


def test_engine_keeps_the_configured_algorithm_when_the_card_has_no_metadata(ca: LocalCA, tmp_path: Path) -> None:
    state = create_card_state(ca)
    state.management_key_algorithm = 0x0C
    state.management_key = os.urandom(32).hex()
    keyfile = tmp_path / "mgmt.key"
    keyfile.write_text(state.management_key)
    card = SoftPivCard(state)
    settings = Settings(state_dir=tmp_path / "state", management_key_algorithm=ManagementKeyAlgorithm.AES256,
                        management_key_source="file", management_key_file=keyfile)
    ctx = RenewalContext(settings, ca, JournalStore(settings.state_dir), AuditLog(settings.state_dir / "audit.log"))
    assert renew(PivSession(card), ctx, Secret("123456")).ok
    assert bytes.fromhex("00F7009B00") in [apdu for apdu, sw in card.trace if sw == 0x6D00]


def test_yubikey54_profile_is_a_yubikey_with_a_3des_key() -> None:
    """What Yubico's ykcs11 2.2.0 needs to write (tests/ykcs11): a 3DES management key (libykpiv
    2.2.0 knows no AES) and GET VERSION answered (its RSA generation asks FD first)."""
    card, s = session_on(profile_state("yubikey54"))
    assert s.get_management_key_algorithm() is ManagementKeyAlgorithm.TDES
    assert card.state.atr == YUBIKEY5_ATR and card.state.yubico_version == [5, 4, 3]
    assert card.transmit(bytes.fromhex("00FD000000")) == (bytes([5, 4, 3]), 0x9000)
    assert bytes.fromhex(card.state.management_key) == DEFAULT_MANAGEMENT_KEY
