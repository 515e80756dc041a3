"""The app's base class (:class:`AppBase`): how it shows dialogs — each at most once, one of a
kind at a time, never answered by a key or click made before it appeared — and how it keeps a
PIN out of the clipboard and out of a crash's traceback (issue 12); and the *Next* the card thread
asks for between two certificates."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from textual import events, on
from textual.app import App
from textual.await_complete import AwaitComplete

from card.config import ConfigError
from card.errors import CardError, InvalidPinError
from tui.messages import NextRequested
from tui.screens.dialogs import NextDialog, TextDialog

T = TypeVar("T")


def _callback(callback: Callable[[T | None], object] | None) -> Callable[[T | None], None] | None:
    """A dialog's callback as Textual types it (its result, if any, is not used)."""
    return cast("Callable[[T | None], None] | None", callback)


class AppBase(App[int]):
    """An app whose :class:`~tui.screens.dialogs.TextDialog` dialogs go through :meth:`open_dialog`,
    that copies no PIN to the clipboard and prints no local variables when it crashes."""

    ANSWER_KEYS = frozenset({"enter", "space", "escape"})
    """Keys that answer a dialog (press its focused button, or cancel it)."""

    shutdown_event: threading.Event
    """Set when the app closes: a question from the card thread then answers False at once."""

    def __init__(self) -> None:
        super().__init__()
        self._dialogs_waiting: set[tuple[object, ...]] = set()
        """Dialogs (by :attr:`TextDialog.dedupe_key`) waiting for one of their kind to leave the screen."""

    def copy_to_clipboard(self, text: str) -> None:
        """Copy ``text`` (OSC 52 to the terminal), unless it holds the value of a PIN/PUK field on
        any screen: then nothing is copied and the bell rings. A :class:`tui.pin_input.PinInput`
        never offers its value; this guards every other path (Ctrl+C on a screen selection, a
        command-palette command, a future widget)."""
        from tui.pin_input import PinInput

        secrets = {field.value for screen in self.screen_stack for field in screen.query(PinInput) if field.value}
        if any(secret in text for secret in secrets):
            self.bell()
            return
        super().copy_to_clipboard(text)

    def _fatal_error(self) -> None:
        """An unhandled exception ends the app (exit code 1, set by Textual): print its traceback
        WITHOUT local variables. Textual's own draws ``show_locals=True``, which printed the PIN a
        handler held (issue 12). Overrides ``App._fatal_error`` (Textual 8; a test pins the hook)."""
        import rich
        from rich.segment import Segments
        from rich.traceback import Traceback

        self.bell()
        traceback = Traceback(show_locals=False, width=None, suppress=[rich])
        self._exit_renderables.append(Segments(self.console.render(traceback, self.console.options)))
        self._close_messages_no_wait()

    def answers_too_early(self, event: events.Event) -> bool:
        """An Enter, Space, Escape or click made before the dialog now on top appeared (a second
        Enter typed in a hurry, a double click): it was meant for what was there before and must
        not answer this dialog. Typed characters are kept (a PIN typed ahead)."""
        if isinstance(event, events.Key):
            if event.key not in self.ANSWER_KEYS:
                return False
        elif not isinstance(event, (events.MouseDown, events.MouseUp, events.Click)):
            return False
        if getattr(event, "is_forwarded", False) or not self.screen_stack:
            return False
        opened_at = getattr(self.screen, "opened_at", None)
        return opened_at is not None and event.time < opened_at

    def push_screen(self, screen: Any, callback: Any = None, wait_for_dismiss: bool = False, *,
                    mode: str | None = None) -> Any:
        """Textual's ``push_screen``; our dialogs (:class:`TextDialog`) go through :meth:`open_dialog`."""
        if isinstance(screen, TextDialog) and not wait_for_dismiss:
            pushed = self.open_dialog(screen, callback)
            return pushed if pushed is not None else AwaitComplete.nothing()
        return super().push_screen(screen, callback, wait_for_dismiss, mode=mode)  # type: ignore[call-overload]  # as called

    def open_dialog(self, dialog: TextDialog[T], callback: Callable[[T | None], object] | None = None) -> Any:
        """Show ``dialog`` unless the same dialog is open already (idempotent).

        A dialog's kind is its id; two dialogs are the same when their
        :attr:`~TextDialog.dedupe_key` (id, title and text) are equal. The same dialog asked for
        again (a second Enter or click, a message arriving twice) is dropped. Another dialog of a
        kind that is on the screen, or still leaving it, is shown once that one has gone.

        Returns:
            The mount awaitable when shown now; a completed awaitable when shown later; None
            when dropped as a duplicate (``callback`` is then never called).
        """
        if dialog.id is None:
            raise ValueError(f"{dialog!r} has no id: a dialog's id names its kind")
        key = dialog.dedupe_key
        if key in self._dialogs_waiting or any(getattr(s, "dedupe_key", None) == key for s in self.screen_stack):
            self.log.warning(f"dialog {dialog.id!r} is open already; not opened twice")
            return None
        if self._id_taken(dialog.id):
            self._dialogs_waiting.add(key)
            self.run_worker(self._open_when_free(dialog, callback), group="dialogs", exit_on_error=False,
                            description=f"Waiting to show {dialog.id}")
            return AwaitComplete.nothing()
        dialog.opened_at = time.monotonic()
        return super().push_screen(dialog, _callback(callback))

    def _id_taken(self, node_id: str) -> bool:
        """A screen with this id is registered (on the stack, or dismissed and not yet removed).

        Textual keeps every screen's id in the app's node list until the screen is removed, and
        raises ``DuplicateIds`` on a second; ``App.children`` shows only the active screen, so
        the node list is asked (Textual 8; tests/tui/test_dialog_safety.py notices a change).
        """
        return self._nodes._get_by_id(node_id) is not None

    async def _open_when_free(self, dialog: TextDialog[T], callback: Callable[[T | None], object] | None) -> None:
        try:
            while self._id_taken(dialog.id or ""):
                await asyncio.sleep(0.02)
        finally:
            self._dialogs_waiting.discard(dialog.dedupe_key)
        dialog.opened_at = time.monotonic()
        super().push_screen(dialog, _callback(callback))

    @on(NextRequested)
    def _next_requested(self, event: NextRequested) -> None:
        """The renewal engine asks for *Next* between two certificates (posted from the card thread)."""
        answer = event.answer
        if answer.done():
            return
        if self.shutdown_event.is_set():
            answer.set_result(False)
            return

        def answered(value: bool | None) -> None:
            if not answer.done():
                answer.set_result(bool(value))

        # The same request arriving twice finds its dialog open and is dropped: that dialog answers it.
        self.open_dialog(NextDialog(event.result, event.number, event.total), answered)

    def explain_error(self, error: BaseException) -> tuple[str, str, str]:
        """(title, message, next step) for any error, in the holder's words: the RA contact of the
        settings, the reference the RA asks for, and the TUI's action where a next step names the
        CLI's (``cardrenew renew`` → Update My Card; tester F-5)."""
        settings = self.backend.settings  # type: ignore[attr-defined]  # CardRenewApp's door
        ra = settings.ra_contact
        if isinstance(error, ConfigError):  # name the file to fix (issue 12, point 9)
            error = error.naming(settings.source)
        if isinstance(error, CardError):
            next_step = tui_next_step(error.next_step.replace("your Registration Authority (RA)", ra))
            if isinstance(error, InvalidPinError):
                next_step = "Nothing was changed on your card. Select Update My Card to try again, entering the PIN carefully."
            reference = getattr(error, "reference", None)
            if reference and reference not in next_step:  # the code the RA asks for
                next_step = f"{next_step} Reference: {reference}."
            return error.title, str(error), next_step
        return ("Unexpected error", f"{error.__class__.__name__}: {error}",
                f"Try again. If the problem persists, contact {ra}.")


def tui_next_step(next_step: str) -> str:
    """A card-layer next step in the TUI's words: "run `cardrenew renew` again" becomes "select
    Update My Card again" (the CLI's mirror is :func:`tui.cli.output.cli_next_step`)."""
    text = re.sub(r"\b([Rr])un `cardrenew renew`", lambda m: ("S" if m.group(1) == "R" else "s") + "elect Update My Card",
                  next_step)
    return text.replace("`cardrenew renew`", "Update My Card")
