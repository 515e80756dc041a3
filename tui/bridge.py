"""The only code that crosses from the card thread to the UI thread.

:class:`TuiReporter` implements :class:`card.renewal.RenewalReporter` by posting messages to the
Write Certificates pane; :meth:`TuiReporter.between_slots` implements the portal's per-certificate
*Next* by pushing a modal with ``call_from_thread`` and blocking the card thread on a
``concurrent.futures.Future`` until the holder answers (style.md item 8).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

from card.piv import Slot
from card.renewal import RenewalStep, SlotResult
from tui.messages import CertificateWritten, RenewalProgressed, SlotRenewalFailed

if TYPE_CHECKING:
    from textual.app import App
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
        self.slots: list[Slot] = []
        """The slots of this renewal, in order, as the engine announced them."""

    # -- RenewalReporter (card thread) -------------------------------------------------------
    def step(self, slot: Slot | None, step: RenewalStep, detail: str = "") -> None:
        if slot is not None and slot not in self.slots:
            self.slots.append(slot)
        self.target.post_message(RenewalProgressed(slot, step, detail))

    def slot_finished(self, slot: Slot, result: SlotResult) -> None:
        message = CertificateWritten(slot, result) if result.renewed else SlotRenewalFailed(slot, result)
        self.target.post_message(message)

    # -- between certificates (card thread) ------------------------------------------------
    def between_slots(self, result: SlotResult) -> bool:
        """Show "certificate N of M renewed" with *Next*; block until it is pressed.

        Returns:
            True to go on with the next certificate; False when the app is closing.
        """
        from tui.screens.dialogs import NextDialog

        number = self.slots.index(result.slot) + 1 if result.slot in self.slots else 1
        total = max(len(self.slots), number)
        answer: Future[bool] = Future()

        def ask() -> None:
            self.app.push_screen(NextDialog(result, number, total), answer.set_result)

        try:
            self.app.call_from_thread(ask)
        except RuntimeError:  # the app is not running any more
            return False
        while True:
            try:
                return bool(answer.result(timeout=0.2))
            except FutureTimeout:
                if self.cancel.is_set():
                    return False
