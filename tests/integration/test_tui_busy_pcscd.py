"""The TUI's *Update My Card* while another program holds the card's PC/SC transaction (tester F-7),
through real pcscd + vpcd: the real app (Pilot) on the PC/SC door, logged on; a second holder — its
own pcscd context and connection, in a transaction, as another ``cardrenew renew`` holds it — keeps
the card; ``u`` answers within the CLI's bound (card.pcsc.BUSY_WAIT_S) with the BUSY words, nothing
on the card changes, and once the other lets go the Card tab works as before."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from card import pcsc
from card.backend import pcsc_backend
from card.config import load_settings
from tests.integration.conftest import READER, ServedCard
from tests.tui.conftest import screen_text, wait_for
from tui.app import make_app
from tui.screens import CardScreen, ErrorDialog, MessageDialog
from tests.tui.test_renewal_flow import renew_to_end

PIN = "123456"
HANG_S = 60.0
"""Only to end a test that hangs (the finding: no answer for as long as the other held the card)."""


class OtherHolder:
    """Another program holding the card: a connection of its own in one PC/SC transaction, until released."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._hold, name="other-holder", daemon=True)
        self._thread.start()
        assert self.holding.wait(15), f"the other holder did not get the card: {self.error!r}"

    def _hold(self) -> None:
        try:
            transport = pcsc.PcscTransport(READER)
            try:
                with transport.transaction():
                    self.holding.set()
                    self.release.wait(HANG_S * 2)
            finally:
                transport.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the constructor's assertion
            self.error = exc
            self.holding.set()

    def stop(self) -> None:
        self.release.set()
        self._thread.join(15)


@pytest.fixture
def other_holder() -> Iterator[list[OtherHolder]]:
    holders: list[OtherHolder] = []
    yield holders
    for holder in holders:
        holder.stop()


async def logged_on(pilot) -> CardScreen:  # type: ignore[no-untyped-def]
    app = pilot.app
    await wait_for(pilot, lambda: app.summary is not None)
    app.screen.query_one("#pin-input").focus()
    await pilot.press(*PIN, "enter")
    await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
    return app.screen


async def busy_then_usable(pilot, card_screen: CardScreen, holder: OtherHolder,  # type: ignore[no-untyped-def]
                           then: str = "updates-available-dialog") -> None:
    """The BUSY dialog is up: its words; OK goes back to the Card tab; once the other program lets go,
    *Update My Card* works (``then``: the dialog it opens)."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), timeout_s=HANG_S)
    text = screen_text(app)
    assert "Another program is using the card" in text, text
    assert "Wait until the other program" in text and "then try again" in text, text
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.screen is card_screen)
    holder.stop()
    await pilot.press("u")
    await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog) and app.screen.id == then, timeout_s=HANG_S)
    await pilot.press("escape")


def tui_app(workdir: Path):  # type: ignore[no-untyped-def]
    settings = dataclasses.replace(load_settings(workdir / "config.toml"), state_dir=workdir / "state")
    return make_app(pcsc_backend(settings, READER))


async def test_update_pressed_again_and_again_while_another_program_holds_the_card_reads_it_once(
        serve_card, workdir: Path, other_holder: list[OtherHolder]) -> None:  # type: ignore[no-untyped-def]
    """Each press used to queue one more card read behind the one waiting for the other's hold (and
    cancel the one queued before): the answer came one BUSY wait later per press."""
    card: ServedCard = serve_card()
    before = card.state.read_text()
    app = tui_app(workdir)
    reads: list[object] = []
    door_read = app.backend.read_card

    def counted_read(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        reads.append(args)
        return door_read(*args, **kwargs)

    async with app.run_test(size=(100, 32)) as pilot:
        card_screen = await logged_on(pilot)
        app.backend.read_card = counted_read
        other_holder.append(OtherHolder())
        for _ in range(3):
            await pilot.press("u")
            await pilot.pause(0.5)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), timeout_s=HANG_S)
        assert len(reads) == 1, f"{len(reads)} card reads queued for three presses"
        assert card.state.read_text() == before  # nothing on the card changed
        await busy_then_usable(pilot, card_screen, other_holder[0])
    assert card.state.read_text() == before


async def test_update_after_a_renewal_while_another_program_holds_the_card_says_busy(
        serve_card, workdir: Path, other_holder: list[OtherHolder]) -> None:  # type: ignore[no-untyped-def]
    """After the PIN was sent on the TUI's connection (its own renewal; before tester F-4's fix, every
    logon), dropping that connection resets the card, which pcscd holds back while another program
    holds a transaction: the TUI answered nothing for as long as the other held the card."""
    card: ServedCard = serve_card()
    app = tui_app(workdir)
    async with app.run_test(size=(100, 32)) as pilot:
        await logged_on(pilot)
        await renew_to_end(pilot)
        card_screen = app.screen  # the Card tab after the renewal
        before = card.state.read_text()
        other_holder.append(OtherHolder())
        await pilot.press("u")
        await busy_then_usable(pilot, card_screen, other_holder[0], then="up-to-date-dialog")
    assert card.state.read_text() == before
