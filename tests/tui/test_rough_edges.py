"""Rough edges a new user met (issue 12 point 9), each driven through the real app with Pilot:
the CA-refused reference stays visible, the per-certificate clock pauses while *Next* waits,
the Help tab has a key, the header has no missing-glyph box, "Do not remove your Smartcard"
goes once the writing is done, and a dialog's footer shows the dialog's keys."""

from __future__ import annotations

import types

import pytest
from textual.widgets import DataTable, Footer, Input, TabbedContent

from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_renewal_flow import PIN, log_on
from tui.app import make_app
from tui.screens import (CardScreen, CompletedWithErrorsScreen, ErrorDialog, MessageDialog, NextDialog, PinDialog,
                         WriteCertificatesScreen)


def footer_keys(app) -> list[str]:  # type: ignore[no-untyped-def]
    """The (key, description) texts the footer of the screen on top shows."""
    from textual.widgets._footer import FooterKey

    footers = list(app.screen.query(Footer))
    assert footers, f"no footer on {app.screen!r}"
    return [f"{key.key_display} {key.description}" for key in footers[0].query(FooterKey)]


async def to_card_tab(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await log_on(pilot)
    await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)


async def to_pin_again(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await to_card_tab(pilot)
    await pilot.press("u")
    await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))


# -- 1. the CA-refused reference stays visible --------------------------------------------------
async def test_ca_refused_reference_stays_on_the_card_tab(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo(fault="ca-refuses")
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_pin_again(pilot)
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        dialog_text = screen_text(app)
        reference = dialog_text.split("Reference: ")[1].split(".")[0].strip()
        assert reference
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        text = screen_text(app)
        assert reference in text and "refused" in text
        await pilot.press("ctrl+r")  # a re-read keeps it
        await wait_for(pilot, lambda: not app.screen.workers)
        assert reference in screen_text(app)


async def test_completed_with_errors_reference_stays_on_the_card_tab(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo(fault="pull-card")
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_pin_again(pilot)
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NextDialog))
        await pilot.press("enter")  # the card is pulled while certificate 2 is written
        await wait_for(pilot, lambda: getattr(app.screen, "id", None) == "issuance-error-dialog")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CompletedWithErrorsScreen))
        reference = app.screen.result.reference
        assert f"Reference: {reference}" in screen_text(app)


# -- 3. time per certificate; the clock pauses while Next waits -----------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


async def test_clock_pauses_while_next_waits(make_demo, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    monkeypatch.setattr("tui.screens.write_certificates.time", types.SimpleNamespace(monotonic=clock.monotonic))
    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_pin_again(pilot)
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NextDialog))
        pane = app.screen_stack[1]
        assert isinstance(pane, WriteCertificatesScreen)
        table = pane.query_one("#certificate-table", DataTable)
        assert "Time" in [str(c.label) for c in table.columns.values()]
        clock.now += 600  # the holder goes for a coffee before pressing Next
        pane._tick()
        await pilot.pause()
        assert "600" not in str(pane.query_one("#elapsed").render())
        dialog = app.screen
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not dialog and isinstance(app.screen, NextDialog))
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
        assert all("600" not in " ".join(row) for row in rows), rows
        times = [str(table.get_cell(key, "time")) for key in ("9A", "9C")]
        assert times == ["0 s", "0 s"], rows  # each certificate's own time; the clock stood still meanwhile
        assert "600" not in str(pane.query_one("#elapsed").render())


# -- 4. a key for the Help tab -------------------------------------------------------------------
async def test_help_tab_has_a_key_in_the_footer(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card_tab(pilot)
        assert any(text.endswith(" Help") for text in footer_keys(app)), footer_keys(app)
        await pilot.press("h")
        await pilot.pause()
        assert app.screen.query_one(TabbedContent).active == "help-tab"
        await pilot.press("u")  # Update My Card goes back to the Card tab
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        assert app.screen_stack[1].query_one(TabbedContent).active == "card-tab"


# -- 7. no missing-glyph box in the header ------------------------------------------------------
async def test_header_icon_is_a_common_glyph(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: app.summary is not None)
        assert "\u2b58" not in app.export_screenshot()  # ⭘ HEAVY LARGE CIRCLE: no glyph in many fonts
        await to_card_tab(pilot)
        assert "\u2b58" not in app.export_screenshot()
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        shot = app.export_screenshot()
        assert "\u2b58" not in shot and "\u23ce" not in shot  # nor ⏎ RETURN SYMBOL for Enter in the footer


# -- 8. "Do not remove your Smartcard" goes once the writing is done -------------------------------
async def test_do_not_remove_goes_when_finished(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_pin_again(pilot)
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NextDialog))
        pane = app.screen_stack[1]
        assert pane.query_one("#do-not-remove").display  # certificate 2 is still to be written
        dialog = app.screen
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not dialog and isinstance(app.screen, NextDialog))
        assert "Finished" in str(pane.query_one("#elapsed").render())
        assert not pane.query_one("#do-not-remove").display


async def test_do_not_remove_goes_when_stopped(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo(fault="pull-card")
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_pin_again(pilot)
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NextDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: getattr(app.screen, "id", None) == "issuance-error-dialog")
        assert not app.screen_stack[1].query_one("#do-not-remove").display


# -- 9. dialogs show their own keys ------------------------------------------------------------
async def test_dialog_footer_shows_the_dialogs_keys(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card_tab(pilot)
        pane_keys = footer_keys(app)
        assert any("Update My Card" in k for k in pane_keys)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        keys = footer_keys(app)
        assert not any("Update My Card" in k or "Log off" in k for k in keys), keys
        assert any(k.endswith("Cancel") for k in keys), keys
        # What the holder sees at the bottom row is the dialog's footer, not the pane's.
        last_line = app.screen._compositor.render_strips()[-1].text  # noqa: SLF001 - the dialog's bottom row
        assert "Update My Card" not in last_line and "Cancel" in last_line, last_line
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        assert app.screen.query_one("#pin-again-input", Input).has_focus
        keys = footer_keys(app)
        assert any(k.endswith("Cancel") for k in keys) and not any("Log off" in k for k in keys), keys


# -- 6. the main panes work at 60×20 -------------------------------------------------------------
def assert_footer_fits(app, width: int) -> None:  # type: ignore[no-untyped-def]
    from textual.widgets._footer import FooterKey

    footer = app.screen.query_one(Footer)
    keys = list(footer.query(FooterKey))
    assert keys, "the footer shows no key"
    for key in keys:
        assert key.region.right <= width and key.region.width >= len(f"{key.key_display} {key.description}"), \
            [(k.description, k.region) for k in keys]


async def test_main_panes_fit_60x20(make_demo) -> None:  # type: ignore[no-untyped-def]
    from textual.widgets import Label

    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(60, 20)) as pilot:
        await wait_for(pilot, lambda: app.summary is not None)
        assert_footer_fits(app, 60)
        await to_card_tab(pilot)
        await wait_for(pilot, lambda: "Due for renewal" in screen_text(app))
        assert_footer_fits(app, 60)
        assert any(k.endswith("Update My Card") for k in footer_keys(app))
        for label in app.screen.query(".slot-status").results(Label):  # the Status column, not cut
            text = str(label.render())
            assert label.region.right <= 60 and label.content_region.width >= len(text), (text, label.region)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        assert_footer_fits(app, 60)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NextDialog))
        pane = app.screen_stack[1]
        table = pane.query_one("#certificate-table", DataTable)
        columns = [str(c.label) for c in table.columns.values()]
        assert "Status" in columns and "Time" in columns
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= table.content_region.width
        dialog = app.screen.query_one("#dialog")
        assert dialog.region.y >= table.region.bottom, "the Next dialog hides the table"


# -- 5. under NO_COLOR the focused input differs by shape, not only by shade ---------------------------
async def test_no_color_focus_is_shown_by_border_shape(make_demo, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NO_COLOR", "1")
    backend, _ = make_demo()
    app = make_app(backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.summary is not None)
        pin = app.screen.query_one("#pin-input", Input)
        pin.focus()
        await pilot.pause()
        focused = pin.styles.border.top[0]
        app.screen.query_one("#logon-button").focus()
        await pilot.pause()
        assert pin.styles.border.top[0] != focused, focused
        await to_card_tab(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: app.screen.id == "change-pin-dialog")
        fields = list(app.screen.query(Input))
        assert fields[0].has_focus
        assert fields[0].styles.border.left[0] not in ("", "none") and fields[1].styles.border.left[0] in ("", "none")
