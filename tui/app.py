"""The cardrenew Textual app: panes, the card-presence policy, and the one error funnel.

Public entry point: :func:`make_app`. All card I/O runs on the card service thread
(``backend.service``); panes await it with :meth:`CardRenewApp.card_call`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from textual import events, on, work
from textual.app import App, SystemCommand
from textual.await_complete import AwaitComplete
from textual.binding import Binding
from textual.screen import Screen
from textual.theme import Theme

from card.config import ConfigError
from card.errors import CardError, CardRemovedError, InvalidPinError, NoCardError
from card.words import Words
from tui.messages import CardInserted, CardRead, CardRemoved, NextRequested
from tui.screens.dialogs import NextDialog, TextDialog, error_dialog
from tui.screens.done import CompletedWithErrorsScreen, LoggedOffScreen
from tui.screens.logon import LogonScreen

# Only what the logon pane needs is imported before the first frame (issue 7: start-up). The Card
# tab, Write Certificates and the renewal engine (with ``cryptography``) are imported where they are
# first used; by then the card thread has usually imported them already, reading the card.
if TYPE_CHECKING:
    from card.piv import PivSession
    from card.renewal import CardSummary, RenewalResult
    from card.secret import Secret
    from card.backend import Backend

T = TypeVar("T")


HIGH_CONTRAST = Theme(
    name="high-contrast",
    primary="#FFFF00", secondary="#00FFFF", accent="#00FFFF", foreground="#FFFFFF",
    background="#000000", surface="#000000", panel="#1A1A1A", boost="#333333",
    success="#00FF00", warning="#FFFF00", error="#FF4040", dark=True,
    luminosity_spread=0.0, text_alpha=1.0,
    variables={"text-muted": "#FFFFFF", "footer-key-foreground": "#FFFF00", "footer-description-foreground": "#FFFFFF",
               "input-selection-background": "#FFFF00 50%", "block-cursor-foreground": "#000000",
               "block-cursor-background": "#FFFF00", "border": "#FFFFFF",
               "button-color-foreground": "#000000", "button-foreground": "#FFFFFF",
               "button-focus-text-style": "bold underline"},
)
"""White and pure colours on black; nothing dimmed (``ui.theme = "high-contrast"`` or ``--theme``)."""

THEMES = {"default": "textual-dark", "high-contrast": HIGH_CONTRAST.name}

EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
"""Signals that end the TUI with 128 + signal after the current card step (SIGHUP: an SSH session dropped)."""

CARD_STEP_WAIT_S = 60.0
"""After the UI has closed, the longest wait for the card step under way (a key generation on a
real card takes ~10 s, a CA request up to its own deadline); then the process ends regardless and
the journal resumes the step at the next logon."""


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class CardRenewApp(App[int]):
    """Renew the certificates on a PIV smartcard, following the portal's panes.

    Args:
        backend: the card service, issuer, journal and audit log (``card.backend.Backend``).
        now: the clock used for expiry arithmetic (aware UTC); tests inject a fixed one.
    """

    CSS_PATH = ["app.tcss"]
    TITLE = "cardrenew"
    SUB_TITLE = "Smartcard Management"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="quit", show=False, tooltip="Leave cardrenew"),
        # Tab and Shift+Tab move the focus in the app's own queue (priority), before the next key of
        # the same terminal read is forwarded: Textual forwards each key to the widget focused when
        # it arrives, so the digits after a Tab in one read landed in the field before it.
        Binding("tab", "focus_next", show=False, priority=True),
        Binding("shift+tab", "focus_previous", show=False, priority=True),
    ]
    KIOSK_BLOCKED_ACTIONS = frozenset({"quit", "help_quit", "command_palette", "suspend_process"})
    """Actions a kiosk never runs: leaving the app, the command palette, suspending to the shell."""
    READER_POLL_S = 1.0
    """How often the reader list is refreshed (off the UI thread) while the logon pane shows."""
    ACTIVITY_EVENTS = (events.Key, events.MouseDown, events.MouseScrollDown, events.MouseScrollUp, events.Paste)

    def __init__(self, backend: Backend, *, now: Callable[[], dt.datetime] | None = None) -> None:
        self.kiosk = backend.settings.kiosk
        """Kiosk mode: no quit key, no command palette, back to the logon pane after log off."""
        if self.kiosk:
            self.ENABLE_COMMAND_PALETTE = False
        super().__init__()
        self.register_theme(HIGH_CONTRAST)
        self.theme = THEMES.get(backend.settings.theme, "textual-dark")
        self.set_class(backend.settings.theme == "high-contrast", "-high-contrast")
        self.backend = backend
        self.inactivity_timeout_s = backend.settings.inactivity_timeout_s
        """Log off after this many seconds without a key press or click (0: never)."""
        self.last_activity = time.monotonic()
        self.now: Callable[[], dt.datetime] = now or _utc_now
        self.summary: CardSummary | None = None
        """The card as last read (None before the first read and after log off)."""
        self.is_logged_on = False
        self.renewing = False
        """True while the renewal engine runs: a card removal is then the engine's to report."""
        self.card_present: bool | None = None
        self.shutdown_event = threading.Event()
        """Set when the app closes (or a signal asks it to): a card-thread question waiting for the
        holder then gives up, and the renewal stops before its next certificate."""
        self.exit_signal: int | None = None
        """The signal that ended the app (see :func:`run_app`), or None."""
        self._dialogs_waiting: set[tuple[object, ...]] = set()
        """Dialogs (by :attr:`TextDialog.dedupe_key`) waiting for one of their kind to leave the screen."""
        self.tries_seen: dict[str, int | None] = {"PIN": None, "PUK": None}
        """Tries left as the card last answered a PIN or PUK entry in this session (None: unknown,
        or reset by a correct entry); used where the card cannot be asked (see :meth:`tries_left`)."""
        self.last_result: RenewalResult | None = None
        self.readers: list[tuple[str, bool]] | None = None
        """The PC/SC readers as last listed, ``[(name, has_card)]`` (None: not listed / one fixed card)."""
        self._listing_readers = False
        if backend.demo:
            self.sub_title = "Smartcard Management (demo card)"

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

    async def action_quit(self) -> None:
        """Ctrl+Q: leave, except while a renewal writes to the card (it would be left unfinished:
        the engine finishes its current card step only on SIGTERM/SIGHUP)."""
        if self.renewing:
            self.notify("Your card is being updated. Wait until it has finished, then quit.",
                        title="Update in progress", severity="warning", markup=False)
            return
        await super().action_quit()

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

    # -- lifecycle ---------------------------------------------------------------------------
    def on_mount(self) -> None:
        if self.exit_signal is not None:  # a signal arrived while the app was starting
            self.exit(return_code=128 + self.exit_signal)
            return
        self.push_screen(LogonScreen())
        # The card watcher and the reader list start after the first frame: their threads (and the
        # demo card they may make) would otherwise compete with it for the interpreter (issue 7).
        self.call_after_refresh(self._watch_service)
        if self.backend.can_switch_reader:
            self.set_interval(self.READER_POLL_S, self._poll_readers, name="readers")
            self.call_after_refresh(self._poll_readers)
        if self.inactivity_timeout_s > 0:
            self.set_interval(min(1.0, self.inactivity_timeout_s / 4), self._check_inactivity, name="inactivity")

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, self.ACTIVITY_EVENTS):
            self.last_activity = time.monotonic()
        if self._answers_too_early(event):
            return
        await super().on_event(event)

    ANSWER_KEYS = frozenset({"enter", "space", "escape"})
    """Keys that answer a dialog (press its focused button, or cancel it)."""

    def _answers_too_early(self, event: events.Event) -> bool:
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

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.kiosk and action in self.KIOSK_BLOCKED_ACTIONS:
            return False
        return super().check_action(action, parameters)

    def _check_inactivity(self) -> None:
        """Log off after ``inactivity_timeout_s`` without input; never while certificates are written."""
        if self.renewing or time.monotonic() - self.last_activity < self.inactivity_timeout_s:
            return
        self.last_activity = time.monotonic()
        if self.is_logged_on:
            self.log_off(idle=True)
            return
        pane = self._pane()
        if isinstance(pane, LogonScreen) and pane.pin_input.value:
            pane.pin_input.clear()  # a half-typed PIN is not left at an unattended kiosk

    def on_unmount(self) -> None:
        # Never wait for the card thread here: it may be waiting for this very UI (a dialog), and
        # the terminal is restored only after unmount. The card step under way finishes on its
        # own thread; :func:`run_app` waits for it after the terminal is restored.
        self.shutdown_event.set()
        self.backend.service.shutdown(wait=False, cancel_pending=True)

    # -- signals (any thread) ------------------------------------------------------------------
    def exit_on_signal(self, signum: int) -> None:
        """End the app with ``128 + signum`` (called from a signal handler; safe at any moment).

        Sets :attr:`shutdown_event` at once (a card-thread question gives up, the renewal stops
        before its next certificate) and asks the UI loop to exit; never waits for anything.
        """
        first = self.exit_signal is None
        if first:
            self.exit_signal = signum
        self.shutdown_event.set()
        loop = self._loop
        if loop is None or not first:
            return  # not running yet (on_mount exits) or already closing
        try:
            loop.call_soon_threadsafe(self.exit, None, 128 + signum)
        except RuntimeError:  # the loop has closed: the app is ending anyway
            pass

    # -- dialogs ---------------------------------------------------------------------------------
    def push_screen(self, screen: Any, callback: Any = None, wait_for_dismiss: bool = False, *,
                    mode: str | None = None) -> Any:
        """Textual's ``push_screen``; our dialogs (:class:`TextDialog`) go through :meth:`open_dialog`."""
        if isinstance(screen, TextDialog) and not wait_for_dismiss:
            pushed = self.open_dialog(screen, callback)
            return pushed if pushed is not None else AwaitComplete.nothing()
        return super().push_screen(screen, callback, wait_for_dismiss, mode=mode)

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
        return super().push_screen(dialog, callback)

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
        super().push_screen(dialog, callback)

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

    def _watch_service(self) -> None:
        """Start the current card service's presence watcher; a replaced service's late reports are dropped."""
        service = self.backend.service

        def presence_changed(present: bool) -> None:  # on the card watcher thread
            if service is self.backend.service:
                self.post_message(CardInserted() if present else CardRemoved())

        service.watch(presence_changed)

    # -- readers (PC/SC) -----------------------------------------------------------------------
    def _poll_readers(self) -> None:
        """List the readers again while the logon pane shows (never while logged on)."""
        if self._listing_readers or self.is_logged_on or self.renewing or not isinstance(self._pane(), LogonScreen):
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
        pane = self._pane()
        if isinstance(pane, LogonScreen):
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
        pane = self._pane()
        if isinstance(pane, LogonScreen):
            pane.reader_switched()

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The palette offers only the card commands valid on the current pane."""
        from tui.screens.card import CardScreen

        yield from super().get_system_commands(screen)
        if isinstance(screen, CardScreen):
            yield SystemCommand("Card: Update My Card", "Check the certificates and renew those due",
                                screen.action_update_card)
            yield SystemCommand("Card: Re-read", "Read the card again", screen.action_reread_card)
            yield SystemCommand("Card: Certificates", "Details of each certificate", screen.action_show_certificates)
            yield SystemCommand("Card: Change passcode", "Change the card's PIN", screen.action_change_pin)
            if self.backend.settings.allow_unlock:
                yield SystemCommand("Card: Unlock card", "Set a new PIN with the PUK", screen.action_unlock_card)
            yield SystemCommand("Card: Log off", "Log off; then remove the card", screen.action_log_off)
        elif isinstance(screen, LogonScreen):
            yield SystemCommand("Card: Re-read", "Look for the card again", screen.action_reread_card)

    # -- card access -------------------------------------------------------------------------
    async def card_call(self, fn: Callable[[PivSession], T]) -> T:
        """Run ``fn(session)`` on the card thread and await its result (raises what ``fn`` raised)."""
        return await asyncio.wrap_future(self.backend.service.submit(fn))

    async def read_summary(self) -> CardSummary:
        """Read the card (no PIN needed); remembers and announces the result.

        Raises:
            CardRemovedError, NoCardError, PinBlockedError, CardError.
        """
        backend, now = self.backend, self.now()

        def read(session: PivSession) -> CardSummary:
            from card.renewal import read_card  # on the card thread: the UI thread never waits for the import

            return read_card(session, backend.settings, now=now, journals=backend.journals, reader=backend.reader_name)

        summary = await self.card_call(read)
        self.summary = summary
        self.post_message(CardRead(summary))
        return summary

    # -- PIN and PUK tries ----------------------------------------------------------------------
    def note_tries(self, what: str, left: int | None) -> None:
        """Remember how the card answered a PIN (``what="PIN"``) or PUK entry: ``left`` tries
        (0: blocked; None: accepted, the counter is full again). Updates the summary's PIN tries
        and the pane (the Card tab stops offering the update once the PIN is blocked)."""
        self.tries_seen[what] = left
        if what == "PUK" and left is None:
            self.tries_seen["PIN"] = None  # an unlock resets the PIN counter too
        if what == "PIN" and self.summary is not None and self.summary.pin_retries != left:
            self.summary = dataclasses.replace(self.summary, pin_retries=left)
            for screen in self.screen_stack:
                changed = getattr(screen, "pin_tries_changed", None)
                if callable(changed):
                    changed()

    async def tries_left(self, what: str = "PIN") -> int | None:
        """The PIN or PUK tries left, asked of the card without spending one (GET METADATA where the
        card answers it; else, for the PIN, an empty VERIFY), or as the card last answered in this
        session. None: unknown, or the PIN is verified (its counter is full)."""
        from card.piv import KEY_REF_PIN, KEY_REF_PUK
        from card.errors import PinBlockedError

        reference = KEY_REF_PIN if what == "PIN" else KEY_REF_PUK

        def ask(session: PivSession) -> int | None:
            session.select()
            left = session.get_tries_left(reference)
            if left is None and what == "PIN":
                try:
                    left = session.get_pin_retries()
                except PinBlockedError:
                    left = 0
            return left

        left = await self.card_call(ask)
        return left if left is not None else self.tries_seen.get(what)

    # -- the one error funnel ----------------------------------------------------------------
    def explain_error(self, error: BaseException) -> tuple[str, str, str]:
        """(title, message, next step) for any error, in the holder's words."""
        ra = self.backend.settings.ra_contact
        if isinstance(error, ConfigError):  # name the file to fix (issue 12, point 9)
            error = error.naming(self.backend.settings.source)
        if isinstance(error, CardError):
            next_step = error.next_step.replace("your Registration Authority (RA)", ra)
            if isinstance(error, InvalidPinError):
                next_step = "Nothing was changed on your card. Select Update My Card to try again, entering the PIN carefully."
            reference = getattr(error, "reference", None)
            if reference and reference not in next_step:  # the code the RA asks for
                next_step = f"{next_step} Reference: {reference}."
            return error.title, str(error), next_step
        return ("Unexpected error", f"{error.__class__.__name__}: {error}",
                f"Try again. If the problem persists, contact {ra}.")

    def show_error(self, error: BaseException | Words, *, then: Callable[[], object] | None = None,
                   id: str = "error-dialog", button: str = "OK") -> None:
        """Show ``error`` — an exception, or the words of a refused state (:mod:`card.words`) — in
        an error dialog (:func:`tui.screens.dialogs.error_dialog`); call ``then()`` when it is
        closed. Every error reaches the screen through here."""
        words = error if isinstance(error, Words) else Words(*self.explain_error(error))
        self.push_screen(error_dialog(words, id=id, button=button), (lambda _: then()) if then is not None else None)
        if isinstance(error, (CardRemovedError, NoCardError)) and self.is_logged_on and not self.renewing:
            self.log_off(removed=True)

    # -- navigation --------------------------------------------------------------------------
    def goto(self, screen: Screen[object]) -> None:
        """Replace the current pane (and any dialogs over it) with ``screen``."""
        async def switch() -> None:
            while len(self.screen_stack) > 2:
                await self.pop_screen()
            await self.switch_screen(screen)

        self.call_later(switch)

    def goto_logon(self) -> None:
        self.goto(LogonScreen())

    def log_on_succeeded(self) -> None:
        from tui.screens.card import CardScreen

        self.is_logged_on = True
        self.goto(CardScreen())

    def back_to_card(self, renewed: RenewalResult | None = None, *, stopped: str | None = None) -> None:
        """Show the Card tab (re-read); ``renewed`` lists what the last renewal did, ``stopped`` says
        why the last update stopped, with its reference (kept visible on the Card tab)."""
        if not self.is_logged_on:
            self.goto_logon()
            return
        from tui.screens.card import CardScreen

        self.goto(CardScreen(renewed, stopped))

    def start_renewal(self, pin: Secret, summary: CardSummary) -> bool:
        """Show Write Certificates, which runs the renewal with ``pin``; once: while a renewal is
        starting or running, another request (a PIN submitted twice) is ignored (and its
        ``pin`` wiped).

        Returns:
            True when this call started it.
        """
        from tui.screens.write_certificates import WriteCertificatesScreen

        if self.renewing or self.shutdown_event.is_set():
            pin.wipe()
            return False
        self.renewing = True  # from now on: Ctrl+Q waits, card removal is the engine's to report
        self.goto(WriteCertificatesScreen(pin, summary))
        return True

    def renewal_finished(self, result: RenewalResult) -> None:
        self.last_result = result
        if isinstance(result.error, CardRemovedError):
            # The service has already dropped the dead connection; the holder must log on again.
            self.is_logged_on = False
            self.summary = None

    def show_completed_with_errors(self, result: RenewalResult) -> None:
        self.goto(CompletedWithErrorsScreen(result, self.backend.settings.ra_contact))

    def log_off(self, *, removed: bool = False, idle: bool = False) -> None:
        """Disconnect (the card forgets the PIN) and show the logged-off pane (kiosk: the logon pane).

        Args:
            removed: the card was removed. idle: the inactivity timeout ran out.
        """
        self.backend.service.disconnect()
        self.is_logged_on = False
        self.summary = None
        if self.kiosk:
            reason = ("The card was removed, so you were logged off. " if removed else
                      "You were logged off after a period without activity. " if idle else "You are logged off. ")
            self.goto(LogonScreen(notice=reason + "Remove your card, then insert it and log on again to test it."))
        else:
            self.goto(LoggedOffScreen(removed=removed, idle=idle))

    # -- card presence -------------------------------------------------------------------------
    @on(CardRemoved)
    def _card_removed(self) -> None:
        self.card_present = False
        if self.renewing:
            return  # the engine reports it and keeps the journal for resume
        pane = self._pane()
        if isinstance(pane, LoggedOffScreen):
            pane.card_removed()
        elif isinstance(pane, LogonScreen):
            pane.action_reread_card()
        elif isinstance(pane, CompletedWithErrorsScreen):
            self.backend.service.disconnect()
            self.is_logged_on = False
        elif self.is_logged_on:
            policy = self.backend.settings.removal_policy
            if policy == "logoff":
                self.log_off(removed=True)
            elif policy == "lock":
                self.backend.service.disconnect()
                self.is_logged_on = False
                self.goto_logon()

    @on(CardInserted)
    def _card_inserted(self) -> None:
        was_absent = self.card_present is False
        self.card_present = True
        if not was_absent or self.renewing:
            return
        pane = self._pane()
        if isinstance(pane, LogonScreen):
            pane.action_reread_card()
        elif isinstance(pane, (LoggedOffScreen, CompletedWithErrorsScreen)) and not self.is_logged_on:
            self.goto_logon()

    def _pane(self) -> Screen[object] | None:
        """The pane under any dialogs."""
        return self.screen_stack[1] if len(self.screen_stack) > 1 else None


def make_app(backend: Backend, *, now: Callable[[], dt.datetime] | None = None) -> CardRenewApp:
    """The cardrenew TUI on ``backend`` (``card.demo.demo_backend`` or ``card.backend.pcsc_backend``).

    Args:
        now: the clock for expiry arithmetic (aware UTC); None uses the system clock.
    """
    return CardRenewApp(backend, now=now)


def run_app(app: CardRenewApp, *, cancel: threading.Event | None = None,
            card_step_wait_s: float = CARD_STEP_WAIT_S) -> int:
    """Run ``app`` in this terminal and return the process exit code.

    SIGTERM, SIGHUP and SIGINT end the UI at once (terminal restored) with ``128 + signal``;
    the card step under way finishes on the card thread (the engine journals it and stops before
    the next certificate), then the reader is released. The wait for that step is bounded by
    ``card_step_wait_s``; nothing here ever waits for the UI from the card thread.

    Args:
        cancel: also set by a signal (the backend's token: a wait for the CA, the RA hook or
            another program's hold on the card ends at once).

    Returns:
        The app's return code: 0, 1 (crash, also one that left no return code), or 128 + the
        signal that ended it.
    """
    def on_signal(signum: int, frame: object) -> None:
        if cancel is not None:
            cancel.set()
        app.exit_on_signal(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in EXIT_SIGNALS}
    try:
        try:
            app.run()
        finally:
            app.shutdown_event.set()
            service = app.backend.service
            if not service.shutdown(wait=True, timeout_s=0.5):
                _say("cardrenew: finishing the current card step before exiting…")
                if not service.shutdown(wait=True, timeout_s=card_step_wait_s):
                    _say("cardrenew: the card did not answer in time; exiting. "
                         "Log on again: an unfinished update resumes where it stopped.")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if app.exit_signal is not None:
        return 128 + app.exit_signal
    # None: the app ended without App.exit() — Textual's panic path (a crash in a driver thread)
    # leaves no return code, and a crash must never look like success to a script or a kiosk.
    return 1 if app.return_code is None else int(app.return_code)


def _say(text: str) -> None:
    """One line to stderr, if there is still a terminal to write to (SIGHUP: maybe not)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
