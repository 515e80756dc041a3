"""Management-key sources of DESIGN §5: diversified by GUID, PIN-protected on the card, tried in order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from card.config import Settings, load_settings
from card.emulator.card import SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA
from card.errors import ManagementKeyError
from card.journal import AuditLog, JournalStore
from card.mgmtkey import diversify, encode_pin_protected
from card.piv import DEFAULT_MANAGEMENT_KEY, ManagementKeyAlgorithm, PivSession
from card.renewal import RenewalContext, renew
from card.secret import Secret

PIN = "123456"


def ctx(tmp_path: Path, ca: LocalCA, settings: Settings) -> RenewalContext:
    return RenewalContext(settings, ca, JournalStore(tmp_path / "state"), AuditLog(tmp_path / "state" / "audit.log"))


def card_with_key(ca: LocalCA, key: bytes, *, pin_protected: bool = False, guid: bytes | None = None) -> SoftPivCard:
    state = create_card_state(ca, key_type=__import__("card.piv", fromlist=["KeyType"]).KeyType.ECCP256, guid=guid)
    state.management_key = key.hex().upper()
    if pin_protected:
        state.objects["5FC109"] = encode_pin_protected(Secret(key)).hex().upper()
    return SoftPivCard(state)


def test_diversified_keys_differ_per_card_and_per_length() -> None:
    master = bytes(range(32))
    a = diversify(Secret(master), b"\x01" * 16, ManagementKeyAlgorithm.TDES)
    b = diversify(Secret(master), b"\x02" * 16, ManagementKeyAlgorithm.TDES)
    assert len(a) == 24 and a != b and DEFAULT_MANAGEMENT_KEY not in (a, b)
    assert len(diversify(Secret(master), b"\x01" * 16, ManagementKeyAlgorithm.AES256)) == 32
    with pytest.raises(ValueError):
        diversify(Secret(b"short"), b"\x01" * 16, ManagementKeyAlgorithm.TDES)


def test_diversified_source_renews_and_a_wrong_master_changes_nothing(ca: LocalCA, tmp_path: Path) -> None:
    guid = os.urandom(16)
    master = os.urandom(32)
    card = card_with_key(ca, diversify(Secret(master), guid, ManagementKeyAlgorithm.TDES).reveal(), guid=guid)
    (tmp_path / "master.hex").write_text(master.hex())
    (tmp_path / "config.toml").write_text(
        '[management_key]\nsource = "diversified"\nmaster_key_file = "' + str(tmp_path / "master.hex") + '"\n')
    settings = load_settings(tmp_path / "config.toml")
    assert renew(PivSession(card), ctx(tmp_path, ca, settings), Secret(PIN)).ok

    other = card_with_key(ca, diversify(Secret(os.urandom(32)), guid, ManagementKeyAlgorithm.TDES).reveal(), guid=guid)
    keys_before = {k: v.private_pem for k, v in other.state.keys.items()}
    with pytest.raises(ManagementKeyError) as exc:
        renew(PivSession(other), ctx(tmp_path / "b", ca, settings), Secret(PIN))
    assert "diversified (refused)" in str(exc.value)
    assert {k: v.private_pem for k, v in other.state.keys.items()} == keys_before


def test_pin_protected_key_on_the_card_and_sources_in_order(ca: LocalCA, tmp_path: Path) -> None:
    own_key = os.urandom(24)
    card = card_with_key(ca, own_key, pin_protected=True)
    settings = Settings(management_key_source="pin-protected", management_key_sources=("pin-protected",))
    assert renew(PivSession(card), ctx(tmp_path, ca, settings), Secret(PIN)).ok

    # a default-key card without the object: "pin-protected" finds none, "default" is tried next
    plain = card_with_key(ca, DEFAULT_MANAGEMENT_KEY)
    both = Settings(management_key_source="pin-protected", management_key_sources=("pin-protected", "default"))
    assert renew(PivSession(plain), ctx(tmp_path / "b", ca, both), Secret(PIN)).ok

    lonely = card_with_key(ca, os.urandom(24))
    with pytest.raises(ManagementKeyError) as exc:
        renew(PivSession(lonely), ctx(tmp_path / "c", ca, settings), Secret(PIN))
    assert "pin-protected (none on the card)" in str(exc.value)
