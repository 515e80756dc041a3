"""The only code that crosses from the card thread to the UI thread.

:class:`TuiReporter` is the progress of a :class:`card.service.RenewalRequest` (a
``card.renewal.RenewalReporter``): it posts messages to the Write Certificates pane;
:meth:`TuiReporter.between_slots` implements the portal's per-certificate
*Next* by posting :class:`~tui.messages.NextRequested` to the app and blocking the card thread on
a ``concurrent.futures.Future`` until the holder answers (style.md item 8).

The card thread never waits for the UI itself (no ``call_from_thread``: it blocks until the UI
runs the call, and forever once the UI has stopped). Every wait here also watches the shutdown
event, so a signal or a closing app ends it within :data:`POLL_S` (issue 12).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

from card.service import ProgressKey, RenewalStep, SlotResult
from tui.messages import CertificateWritten, NextRequested, RenewalProgressed, SlotRenewalFailed

POLL_S = 0.1
"""How often a waiting card thread looks at the shutdown event (seconds)."""

if TYPE_CHECKING:
    from textual.app import App
    from textual.message import Message
    from textual.message_pump import MessagePump


class TuiReporter:
    """Posts renewal progress to ``target`` (a pane) and asks the holder for *Next*.

    Args:
        app: the running app (for ``call_from_thread``).
        target: the pane that receives the messages.
        cancel: set when the app is closing; a pending *Next* then answers False.
    """

    def __init__(self, app: App[object], target: MessagePump, cancel: threading.Event) -> None:
        self.app = app
        self.target = target
        self.cancel = cancel
        self.slots: list[ProgressKey] = []
        """The PIV slots or token keys of this renewal, in order, as the engine announced them."""

    # -- RenewalReporter (card thread) -------------------------------------------------------
    def step(self, slot: ProgressKey | None, step: RenewalStep, detail: str = "") -> None:
        if slot is not None and slot not in self.slots:
            self.slots.append(slot)
        self._post(RenewalProgressed(slot, step, detail))

    def slot_finished(self, slot: ProgressKey, result: SlotResult) -> None:
        self._post(CertificateWritten(slot, result) if result.renewed else SlotRenewalFailed(slot, result))

    def _post(self, message: Message) -> None:
        """Post to the pane; once the UI has gone, progress is dropped (the engine must go on)."""
        try:
            self.target.post_message(message)
        except RuntimeError:  # the UI loop has closed
            pass

    # -- between certificates (card thread) ------------------------------------------------
    def between_slots(self, result: SlotResult) -> bool:
        """Show "certificate N of M renewed" with *Next*; block until it is pressed.

        Returns:
            True to go on with the next certificate; False when the app is closing (the shutdown
            event is set, or the app no longer takes messages).
        """
        number = self.slots.index(result.slot) + 1 if result.slot in self.slots else 1
        total = max(len(self.slots), number)
        answer: Future[bool] = Future()
        if self.cancel.is_set():
            return False
        try:
            posted = self.app.post_message(NextRequested(result, number, total, answer))
        except RuntimeError:  # the UI loop has closed
            return False
        if not posted:
            return False
        while not self.cancel.is_set():
            try:
                return bool(answer.result(timeout=POLL_S))
            except FutureTimeout:
                continue
        return False
