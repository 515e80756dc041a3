#!/usr/bin/env python3
"""Drive the TUI with Pilot on the demo card and save one SVG per pane into ``screenshots/``.

Usage: ``python scripts/take_screenshots.py [OUTPUT_DIR]``. No hardware needed; the demo CA is
created in a temporary XDG data directory, so nothing under ``~`` is touched. The files are
produced by this script only; nobody edits them by hand (style.md item 14).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SIZE = (100, 30)
PIN = "123456"


async def wait_for(pilot, condition: Callable[[], object], timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waiting on {pilot.app.screen!r}")
        await pilot.pause(0.05)
    await pilot.pause()


async def main(out: Path) -> None:
    from textual.widgets import DataTable, Input

    from card.demo import demo_backend
    from tui.app import make_app
    from tui.screens import (CardScreen, CompletedWithErrorsScreen, ErrorDialog, LoggedOffScreen, LogonScreen,
                             MessageDialog, NextDialog, PinDialog, WriteCertificatesScreen)

    out.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="cardrenew-shots-"))

    def shot(app, name: str) -> None:  # type: ignore[no-untyped-def]
        app.save_screenshot(filename=f"{name}.svg", path=str(out))
        print("saved", out / f"{name}.svg")

    # -- the happy path ---------------------------------------------------------------------
    backend, card = demo_backend(state_dir=state / "ok")
    card.faults.delays_s = {0xDB: 0.8}  # slow PUT DATA a little, so "Writing" can be seen
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
        app.screen.query_one("#pin-input", Input).focus()
        await pilot.press(*PIN)
        shot(app, "01-logon")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        shot(app, "02-card-tab")
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        shot(app, "03-update-available")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        await pilot.press(*PIN)
        shot(app, "04-pin-again")
        await pilot.press("enter")

        def writing() -> bool:
            screen = app.screen
            if not isinstance(screen, WriteCertificatesScreen):
                return False
            table = screen.query_one(DataTable)
            return any(str(table.get_cell(key, "status")) == "Writing" for key in table.rows)

        await wait_for(pilot, writing)
        shot(app, "05-write-certificates")
        await wait_for(pilot, lambda: isinstance(app.screen, NextDialog))
        shot(app, "06-next")
        dialog = app.screen
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not dialog and isinstance(app.screen, NextDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        shot(app, "07-confirmation")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        shot(app, "08-card-tab-renewed")
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LoggedOffScreen))
        shot(app, "11-logged-off")

    # -- the error path: the card is pulled while the second certificate is written -----------
    backend, card = demo_backend(fault="pull-card", state_dir=state / "pull")
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
        app.screen.query_one("#pin-input", Input).focus()
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NextDialog))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        shot(app, "09-error")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CompletedWithErrorsScreen))
        shot(app, "10-completed-with-errors")

    # -- the Card tab's other panes: certificate details, Change passcode (the default policy: no Unlock) --
    from card.config import Settings
    from tui.screens.dialogs import NewPinDialog

    async def log_on(app, pilot) -> None:  # type: ignore[no-untyped-def]
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
        app.screen.query_one("#pin-input", Input).focus()
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)

    backend, card = demo_backend(Settings(), state_dir=state / "details")
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await log_on(app, pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: app.screen.query_one("#certificate-list").has_focus)
        shot(app, "12-certificates")
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        shot(app, "13-change-passcode")

    # -- the dry run: the Card tab's Check (issue 15), with the PIN -------------------------------------
    from tui.screens.check import CheckPinDialog, CheckReportDialog

    backend, card = demo_backend(Settings(), state_dir=state / "check")
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await log_on(app, pilot)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckPinDialog))
        await pilot.press(*PIN, "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckReportDialog), 60)
        shot(app, "18-check-report")

    # -- a blocked card, Unlock card allowed: the PUK and a new PIN ---------------------------------
    backend, card = demo_backend(dataclasses.replace(Settings(), allow_unlock=True), state_dir=state / "blocked")
    card.state.pin_retries = 0
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None
                       and not app.screen.query_one("#unlock-button").has_class("-hidden"))
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, NewPinDialog))
        shot(app, "14-unlock-card")

    # -- the high-contrast theme ------------------------------------------------------------------
    backend, card = demo_backend(dataclasses.replace(Settings(), theme="high-contrast"), state_dir=state / "contrast")
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await log_on(app, pilot)
        shot(app, "15-high-contrast")

    # -- kiosk mode: log off returns to the logon pane --------------------------------------------
    backend, card = demo_backend(dataclasses.replace(Settings(), kiosk=True), state_dir=state / "kiosk")
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await log_on(app, pilot)
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
        shot(app, "16-kiosk-logged-off")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "screenshots"
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="cardrenew-xdg-")
    os.environ["XDG_STATE_HOME"] = os.environ["XDG_DATA_HOME"]
    asyncio.run(main(target))
