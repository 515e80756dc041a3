"""Tester finding F-1: after an update stopped between a slot's new key and its certificate, the
Card tab's status column says the slot does not work, as ``cardrenew status`` does (``unfinished``),
never "Due for renewal" (the holder would believe 9C still works for 30 days)."""

from __future__ import annotations

import json

import pytest

from card.secret import Secret
from card.service import RenewalRequest
from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_renewal_flow import PIN, log_on
from tests.tui.test_same_words import cli_on
from tui.app import make_app
from tui.screens import CardScreen


async def test_a_slot_left_unfinished_reads_not_working_on_the_card_tab_as_in_status(
        make_demo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from tui.cli import main

    backend, card = make_demo(fault="pull-card")  # the card is pulled at the 2nd certificate's PUT DATA
    result = backend.renew(RenewalRequest(Secret(PIN))).result(timeout=120)
    assert result.journal_kept and not result.ok
    card.faults.drop_at_put_data = None
    card.insert()
    cli_on(monkeypatch, backend, card)
    main(["status", "--json"])
    states = {s["slot"]: s["state"] for s in json.loads(capsys.readouterr().out)["slots"]}
    assert states == {"9A": "ok", "9C": "unfinished"}
    app = make_app(backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers
                       and "Not working" in screen_text(app))
        text = screen_text(app)
        row = next(line for line in text.splitlines() if line.startswith("Not working"))
        assert row == "Not working: finish the update"
        assert "Due for renewal" not in text  # 9C's old certificate is not offered as still working
