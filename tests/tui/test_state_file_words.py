"""Tester F-5: a state directory that failed mid-renewal was reported in the TUI only as "Digital
Signature (9C) could not be renewed: not attempted after the previous failure" — no path, no cause —
and its next steps told a TUI user to run `cardrenew renew`. The dialog now gives the error that
stopped the run (the file and why) and the TUI's own next step."""

from __future__ import annotations

import errno

from card import atomic
from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_renewal_flow import PIN, log_on
from tui.app import make_app
from tui.app_base import tui_next_step
from tui.screens import CardScreen, ErrorDialog, MessageDialog, NextDialog, PinDialog


async def test_an_unwritable_audit_log_after_the_first_certificate_names_the_file(make_demo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    backend, _card = make_demo()
    app = make_app(backend)
    try:
        async with app.run_test(size=(110, 36)) as pilot:
            await log_on(pilot)
            await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
            await pilot.press("u")
            await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
            # From now on every append to the audit log fails (EACCES): the first certificate is written,
            # its record cannot be, and the run stops before the second.
            atomic.set_write_fault(atomic.WriteFault(at=1, error=errno.EACCES, only=("append",),
                                                     under=tmp_path / "state"))
            await pilot.press(*PIN, "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, (ErrorDialog, NextDialog)), 60)
            if isinstance(app.screen, NextDialog):
                await pilot.press("enter")
                await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), 60)
            text = screen_text(app)
            assert "audit.log" in text and "writable" in text, text
            assert "cardrenew renew" not in text and "Update My Card" in text
    finally:
        atomic.set_write_fault(None)


def test_the_clis_next_step_in_the_tuis_words() -> None:
    assert tui_next_step("Free some space, then run `cardrenew renew` again.") == \
        "Free some space, then select Update My Card again."
    assert tui_next_step("Run `cardrenew renew` again when you are ready.") == \
        "Select Update My Card again when you are ready."
