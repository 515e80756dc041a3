"""The base of every pane: typed access to the app, and the worker-error funnel."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from tui.app import CardRenewApp


class Pane(Screen[None]):
    """A full-screen pane. Worker errors are not handled here but sent to the app's one funnel."""

    @property
    def card_app(self) -> CardRenewApp:
        """The app, typed."""
        return cast("CardRenewApp", self.app)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Send a failed worker's error to :meth:`CardRenewApp.show_error` (the one funnel)."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.card_app.show_error(event.worker.error)
