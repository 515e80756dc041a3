"""Accessibility: NO_COLOR, the high-contrast theme, status in words, visible keys in the footer."""

from __future__ import annotations

import dataclasses

import pytest
from rich.segment import Segment
from rich.style import Style
from textual.color import Color

from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_renewal_flow import log_on
from tui.app import make_app
from tui.screens import CardScreen, LogonScreen


def filtered_colours(app) -> set[tuple[int, int, int]]:  # type: ignore[no-untyped-def]
    """The colours a red-on-green segment has after the app's output filters."""
    segments = [Segment("Expired", Style(color="rgb(255,0,0)", bgcolor="rgb(0,160,0)"))]
    for line_filter in app._filters:
        segments = line_filter.apply(segments, Color(0, 0, 0))
    colours = set()
    for segment in segments:
        for colour in (segment.style.color, segment.style.bgcolor):
            if colour is not None:
                colours.add(colour.get_truecolor())
    return colours


async def test_no_color_is_honoured(make_demo, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NO_COLOR", "1")
    backend, _ = make_demo()
    app = make_app(backend)
    assert app.no_color
    colours = filtered_colours(app)
    assert colours and all(r == g == b for r, g, b in colours), colours  # grey levels only
    async with app.run_test(size=(100, 32)) as pilot:
        await log_on(pilot)
        # Without colour the status is still there in words.
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and "Due for renewal" in screen_text(app))


async def test_colour_without_no_color(make_demo, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NO_COLOR", raising=False)
    backend, _ = make_demo()
    app = make_app(backend)
    assert not app.no_color
    assert any(not (r == g == b) for r, g, b in filtered_colours(app))


@pytest.mark.parametrize("theme,expected", [("default", "textual-dark"), ("high-contrast", "high-contrast")])
async def test_theme_setting(make_demo, theme: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    backend.settings = dataclasses.replace(backend.settings, theme=theme)
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
        assert app.theme == expected
        if theme == "high-contrast":
            variables = app.get_css_variables()
            assert variables["background"].upper() == "#000000"
            assert variables["foreground"].upper() == "#FFFFFF"


async def test_footer_shows_the_card_tab_keys_at_80_columns(make_demo) -> None:  # type: ignore[no-untyped-def]
    from textual.widgets import Footer

    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        footer = app.screen.query_one(Footer)
        keys = [(str(k.key_display or k.key), k.description) for k in footer.query("FooterKey")]
        descriptions = [d for _, d in keys]
        for wanted in ("Update My Card", "Log off"):
            assert wanted in descriptions
        # every footer key is visible on the one line of an 80-column terminal, left of the palette key
        regions = [(k.description, k.region) for k in footer.query("FooterKey")]
        palette = [r for d, r in regions if d == "palette"]
        keys_right = max(r.right for d, r in regions if d != "palette")
        assert keys_right <= (palette[0].x if palette else 80), regions
        assert {"Details", "Passcode", "Re-read", "Quit"} <= set(descriptions)
