"""The app's part in choosing the PC/SC reader: the reader list, refreshed every second while the
logon pane shows, and following a card inserted in another reader (unless one was named)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from textual import work

from card.errors import CardError

if TYPE_CHECKING:
    from typing import Any

    from textual.screen import Screen

    from card.backend import Backend
    from tui.screens.base import Pane


class ReaderFollowing:
    """Mixed into the app (``tui.app.CardRenewApp``), which has the attributes declared here."""

    backend: Backend
    readers: list[tuple[str, bool]] | None
    is_logged_on: bool
    summary: object
    card_present: bool | None
    _listing_readers: bool

    kiosk: bool

    if TYPE_CHECKING:
        @property
        def renewing(self) -> bool: ...

        def goto(self, screen: Screen[Any]) -> None: ...

        def _pane(self) -> Pane | None: ...

        def _watch_service(self) -> None: ...

    def _poll_readers(self) -> None:
        """List the readers again while the logon pane shows (never while logged on)."""
        pane = self._pane()
        if self._listing_readers or self.is_logged_on or self.renewing or pane is None or not pane.LISTS_READERS:
            return
        self._listing_readers = True
        self.refresh_readers()

    @work(group="readers", exit_on_error=False, description="Listing the card readers")
    async def refresh_readers(self) -> None:
        """List the readers on a thread (pcscd calls never run on the UI thread); announce changes."""
        try:
            try:
                readers = await asyncio.to_thread(self.backend.list_readers)
            except CardError:  # pcscd stopped or refusing: no readers for now
                readers = []
        finally:
            self._listing_readers = False
        if readers == self.readers:
            return
        self.readers = readers
        self._follow_card(readers)
        if (pane := self._pane()) is not None:
            pane.readers_listed(readers)

    def _follow_card(self, readers: list[tuple[str, bool]]) -> None:
        """When no reader was named and ours holds no card, move to the (first) reader that does."""
        if self.backend.reader_fixed or self.is_logged_on or self.renewing:
            return
        if dict(readers).get(self.backend.reader_name, False):
            return
        with_card = [name for name, present in readers if present]
        if with_card:
            self.switch_reader(with_card[0])

    def switch_reader(self, name: str, *, chosen: bool = False) -> None:
        """Use reader ``name``: a new card service (the old one is shut down off this thread).

        Args:
            chosen: the user chose it; the app then never switches on its own.
        """
        if chosen:
            self.backend.reader_fixed = True
        if name == self.backend.reader_name or self.is_logged_on or self.renewing:
            return
        self.backend.switch_reader(name)
        self.summary = None
        self.card_present = None
        self._watch_service()
        if (pane := self._pane()) is not None:
            pane.reader_switched()

    # -- the Readers pane (issue 15): every reader at once, for support staff -------------------
    def readers_pane_offered(self) -> bool:
        """F6 is offered on the logon pane, on PC/SC, not logged on, not renewing, never in a kiosk."""
        pane = self._pane()
        return (not self.kiosk and self.backend.can_switch_reader and not self.is_logged_on and not self.renewing
                and pane is not None and pane.LISTS_READERS)

    def action_readers(self) -> None:
        """F6: the *Readers* pane (tui/screens/readers.py), imported when first shown."""
        if self.readers_pane_offered():
            from tui.screens.readers import ReadersScreen

            self.goto(ReadersScreen())
