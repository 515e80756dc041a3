"""The *Readers* pane (issue 15), driven with Pilot on four in-process readers (tests/queue_readers.py):
F6 from the logon pane; four cards renewed at once, each with its own holder's PIN typed in a
dialog naming holder and reader; a pulled card and a CA refusal leave the others renewed and show
their references; the last-try guard; leaving only once nothing is being renewed."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable

from card.emulator.card import CardFaults
from tests.queue_readers import HOLDERS, READERS, QueueReaders, verify_pins
from tests.tui.conftest import screen_text, wait_for
from tui.app import make_app
from tui.screens import LogonScreen
from tui.screens.dialogs import MessageDialog
from tui.screens.readers import QueuePinDialog, ReadersScreen


def states(app) -> dict[str, str]:  # type: ignore[no-untyped-def]
    table = app.screen.query_one("#readers-table", DataTable)
    return {str(row.key.value): str(table.get_cell(row.key, "state")) for row in table.ordered_rows}


async def open_readers(pilot, app, n: int):  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
    await pilot.press("f6")
    await wait_for(pilot, lambda: isinstance(app.screen, ReadersScreen))
    await wait_for(pilot, lambda: len(states(app)) == n and all(s == "due" for s in states(app).values()))


async def type_pins(pilot, app, readers: QueueReaders | dict[str, tuple[str, str]], n: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Answer each PIN dialog with the PIN of the holder it names (``readers``, or ``{holder: (reader,
    PIN)}``), checking the title names that holder's reader; the dialogs' titles."""
    if isinstance(readers, QueueReaders):
        readers = {readers.holders[r]: (r, readers.pins[r]) for r in readers.holders}
    titles = []
    for _ in range(n):
        await wait_for(pilot, lambda: isinstance(app.screen, QueuePinDialog))
        title = app.screen.dialog_title
        titles.append(title)
        holder = next(h for h in readers if h in title)
        reader, pin = readers[holder]
        assert title == f"PIN of {holder}'s card in {reader}"
        await pilot.press(*pin, "enter")
        await wait_for(pilot, lambda t=title: getattr(app.screen, "dialog_title", None) != t)
    return titles


async def test_four_cards_renewed_at_once_from_the_readers_pane(tmp_path: Path) -> None:
    readers = QueueReaders(tmp_path, 4, faults={r: CardFaults(delays_s={0x47: 0.2}) for r in READERS})
    app = make_app(readers.backend())
    async with app.run_test(size=(100, 30)) as pilot:
        await open_readers(pilot, app, 4)
        assert {r: h for r, h in zip(READERS, HOLDERS)} == {
            str(row.key.value): str(app.screen.query_one("#readers-table", DataTable).get_cell(row.key, "holder"))
            for row in app.screen.query_one("#readers-table", DataTable).ordered_rows}
        await pilot.press("a")
        titles = await type_pins(pilot, app, readers, 4)
        assert len(set(titles)) == 4
        await wait_for(pilot, lambda: set(states(app).values()) == {"renewed"}, timeout_s=60)
        for reader, card in readers.cards.items():  # each card got its own holder's PIN, no other
            assert set(verify_pins(card)) == {readers.pins[reader].encode()}
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))


async def test_a_pulled_card_and_a_ca_refusal_show_their_references(tmp_path: Path) -> None:
    pulled, refused = READERS[1], READERS[2]
    readers = QueueReaders(tmp_path, 4, foreign=(refused,), faults={pulled: CardFaults(drop_at_put_data=2)})
    app = make_app(readers.backend())
    async with app.run_test(size=(100, 30)) as pilot:
        await open_readers(pilot, app, 4)
        await pilot.press("a")
        await type_pins(pilot, app, readers, 4)
        await wait_for(pilot, lambda: all(s == "renewed" or s.startswith("failed (ref ")
                                          for s in states(app).values()), timeout_s=60)
        shown = states(app)
        assert shown[READERS[0]] == shown[READERS[3]] == "renewed"
        assert shown[pulled].startswith("failed (ref ") and shown[refused].startswith("failed (ref ")
        table = app.screen.query_one("#readers-table", DataTable)
        table.move_cursor(row=table.get_row_index(refused))
        await pilot.pause()
        detail = str(app.screen.query_one("#readers-detail").render())
        assert "not issued by this CA" in detail and "Reference: " in detail
        assert shown[refused].removeprefix("failed (ref ").rstrip(")") in detail


async def test_the_last_try_guard_asks_first_and_cancel_sends_nothing(tmp_path: Path) -> None:
    readers = QueueReaders(tmp_path, 2)
    readers.cards[READERS[1]].state.pin_retries = 1
    app = make_app(readers.backend())
    async with app.run_test(size=(100, 30)) as pilot:
        await open_readers(pilot, app, 2)
        table = app.screen.query_one("#readers-table", DataTable)
        table.move_cursor(row=table.get_row_index(READERS[1]))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, QueuePinDialog))
        await pilot.press(*readers.pins[READERS[1]], "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
        assert HOLDERS[1] in screen_text(app) and "Only 1 try is left" in screen_text(app)
        await pilot.press("enter")  # Cancel is focused: a hurried Enter sends nothing
        await wait_for(pilot, lambda: isinstance(app.screen, ReadersScreen))
        await wait_for(pilot, lambda: states(app)[READERS[1]] == "due")
        assert verify_pins(readers.cards[READERS[1]]) == []
        assert readers.cards[READERS[1]].state.pin_retries == 1


async def test_the_pane_stays_while_cards_are_renewed(tmp_path: Path) -> None:
    readers = QueueReaders(tmp_path, 1, faults={READERS[0]: CardFaults(delays_s={0x47: 0.5})})
    app = make_app(readers.backend())
    async with app.run_test(size=(100, 30)) as pilot:
        await open_readers(pilot, app, 1)
        await pilot.press("enter")
        await type_pins(pilot, app, readers, 1)
        await wait_for(pilot, lambda: states(app)[READERS[0]].startswith("renewing"))
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ReadersScreen)
        await wait_for(pilot, lambda: states(app)[READERS[0]] == "renewed", timeout_s=60)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen))
