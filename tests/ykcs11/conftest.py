"""Fixtures of the ykcs11 tests: the private pcscd (one per session) and cards served on its
reader. How and why: :mod:`tests.ykcs11.pcscd`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from card.emulator.create import create_card_file
from card.enrollment.local import LocalCA
from card.piv import KeyType
from tests.ykcs11.pcscd import YkCard, YkPcscd, start_pcscd


@pytest.fixture(scope="session")
def yk_pcscd() -> Iterator[YkPcscd]:
    """The ykcs11 pcscd (:func:`tests.ykcs11.pcscd.start_pcscd`), stopped by PID at the end."""
    pcscd = start_pcscd()
    try:
        yield pcscd
    finally:
        pcscd.stop()


@pytest.fixture
def yk_card(yk_pcscd: YkPcscd, ca: LocalCA, tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Factory: ``yk_card(key_type=KeyType.RSA2048, extra=[serve fault options], issuer=LocalCA)`` makes a card of
    the ``yubikey54`` profile (3DES management key, the Yubico extensions: what ykcs11 2.2.0 needs
    to write) with CA-issued 9A and 9C certificates and serves it; stopped at the end."""
    cards: list[YkCard] = []

    def _make(key_type: KeyType = KeyType.RSA2048, extra: list[str] | None = None,
              expires_in_days: int = 30, issuer: LocalCA | None = None) -> YkCard:
        state = tmp_path / f"ykcard{len(cards)}.json"
        create_card_file(state, issuer or ca, key_type=key_type, profile="yubikey54", expires_in_days=expires_in_days)
        card = YkCard(yk_pcscd, state, list(extra or []))
        cards.append(card)
        return card.start()

    yield _make
    for card in reversed(cards):
        with contextlib.suppress(AssertionError):
            card.stop()
