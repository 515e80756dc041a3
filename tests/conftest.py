"""Shared fixtures: an isolated XDG tree per test, an embedded CA, and virtual cards."""

from __future__ import annotations

from pathlib import Path

import pytest

from card.emulator.card import CardFaults, SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA, init_ca
from card.piv import KeyType

pytest_plugins = ["tests.token_compat"]  # the README's token compatibility table, from the results


@pytest.fixture(autouse=True)
def isolated_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own XDG config/data/state dirs: nothing touches the developer's home."""
    root = tmp_path / "xdg"
    for name in ("CONFIG", "DATA", "STATE", "CACHE"):
        (root / name.lower()).mkdir(parents=True)
        monkeypatch.setenv(f"XDG_{name}_HOME", str(root / name.lower()))
    (root / "runtime").mkdir(mode=0o700)  # the journal's fallback directory (card.journal)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(root / "runtime"))
    monkeypatch.delenv("CARDRENEW_CONFIG", raising=False)
    return root


@pytest.fixture(scope="session")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca")
    init_ca(directory, "cardrenew Test CA")
    return directory


@pytest.fixture
def ca(ca_dir: Path) -> LocalCA:
    return LocalCA(ca_dir)


@pytest.fixture
def make_card(ca: LocalCA, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: ``make_card(expires_in_days=30, key_type=KeyType.RSA2048, faults=None)``."""

    def _make(expires_in_days: int = 30, key_type: KeyType = KeyType.RSA2048,
              faults: CardFaults | None = None) -> SoftPivCard:
        state = create_card_state(ca, expires_in_days=expires_in_days, key_type=key_type)
        return SoftPivCard(state, tmp_path / "card.json", faults)

    return _make
