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


def test_inactivity_and_kiosk_settings(tmp_path: Path) -> None:
    assert Settings().inactivity_timeout_s == 300 and Settings().kiosk is False
    path = tmp_path / "config.toml"
    path.write_text("[ui]\ninactivity_timeout_s = 0\nkiosk = true\n")
    settings = load_settings(path)
    assert settings.inactivity_timeout_s == 0 and settings.kiosk is True
    assert load_settings(path, kiosk=None).kiosk is True  # --kiosk absent keeps the file's value
    path.write_text("[ui]\ninactivity_timeout_s = -1\n")
    with pytest.raises(ConfigError, match="inactivity_timeout_s"):
        load_settings(path)
    path.write_text("[ui]\nkiosk = 1\n")
    with pytest.raises(ConfigError, match="ui.kiosk must be true or false"):
        load_settings(path)


def test_theme_setting(tmp_path: Path) -> None:
    assert Settings().theme == "default"
    path = tmp_path / "config.toml"
    path.write_text("[ui]\ntheme = \"high-contrast\"\n")
    assert load_settings(path).theme == "high-contrast"
    assert load_settings(path, theme="default").theme == "default"  # --theme wins
    path.write_text("[ui]\ntheme = \"neon\"\n")
    with pytest.raises(ConfigError, match="ui.theme"):
        load_settings(path)
