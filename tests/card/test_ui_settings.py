"""The [ui] settings the TUI reads: allow_unlock (and their wrong values)."""

from __future__ import annotations

from pathlib import Path

import pytest

from card.config import ConfigError, Settings, load_settings


def test_ui_defaults() -> None:
    settings = Settings()
    assert settings.allow_unlock is False


def test_ui_settings_are_read(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[ui]\nallow_unlock = true\n")
    settings = load_settings(path)
    assert settings.allow_unlock is True


@pytest.mark.parametrize("content,message", [
    ("[ui]\nallow_unlock = \"yes\"", "ui.allow_unlock must be true or false"),
])
def test_wrong_ui_settings_name_the_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert message in str(exc.value)
