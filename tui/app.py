"""The cardrenew Textual app: panes, the card-presence policy, and the one error funnel.

Entry points: :func:`make_app`, :func:`run_app`. Card I/O goes through the door (``backend``,
:class:`card.service.CardDoor`); panes post messages (:mod:`tui.messages`) to navigate, show an
error or renew; the app tells the pane about the card through :class:`tui.screens.base.Pane`'s hooks."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

from textual import events, on
from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from card.errors import CardRemovedError, NoCardError, TokenStorageError
from card.words import Words
from tui.app_base import AppBase
from tui.readers import ReaderFollowing
from tui.messages import (CardInserted, CardRead, CardRemoved, ErrorRaised, GotoPane, LoggedOn, LogOffRequested,
                          ReaderChosen, RenewalEnded, RenewalRequested)
from tui.screens.base import Pane
from tui.screens.dialogs import error_dialog
from tui.screens.done import CompletedWithErrorsScreen, LoggedOffScreen
from tui.screens.logon import LogonScreen
from tui.running import CARD_STEP_WAIT_S, EXIT_SIGNALS, run_app  # noqa: F401 - the entry points, here as before
from tui.theme import HIGH_CONTRAST, THEMES

# Only the logon pane is imported before the first frame (issue 7); the Card tab, Write Certificates
# and the engine (``cryptography``) where first used, when the card thread has usually loaded them.
if TYPE_CHECKING:
    from card.backend import Backend
    from card.service import CardSummary, RenewalResult


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class CardRenewApp(ReaderFollowing, AppBase):
    """Renew the certificates on a PIV smartcard, following the portal's panes.

    Args:
        backend: the card service's door on a reader or the demo card, with the issuer, journal
            and audit log (``card.backend.Backend``).
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
        Binding("f6", "readers", "Readers", id="readers", tooltip="Every reader and its card: renew several cards"),
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
            self.ENABLE_COMMAND_PALETTE = False  # type: ignore[misc]  # Textual reads it per instance; a kiosk has none
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
        self._renewing = False
        self.card_present: bool | None = None
        self.shutdown_event = threading.Event()
        """Set when the app closes (or a signal asks it to): a card-thread question waiting for the
        holder then gives up, and the renewal stops before its next certificate."""
        self.exit_signal: int | None = None
        """The signal that ended the app (see :func:`run_app`), or None."""
        self.tries_seen: dict[str, int | None] = {"PIN": None, "PUK": None}
        """Tries left as the card last answered a PIN or PUK entry in this session (None: unknown,
        or reset by a correct entry); used where the card cannot be asked (see :meth:`tries_left`)."""
        self.last_result: RenewalResult | None = None
        self.readers: list[tuple[str, bool]] | None = None
        """The PC/SC readers as last listed, ``[(name, has_card)]`` (None: not listed / one fixed card)."""
        self._listing_readers = False
        if backend.demo:
            self.sub_title = "Smartcard Management (demo card)"

    @property
    def renewing(self) -> bool:
        """True from the renewal's start (:class:`RenewalRequested`) until the engine returned
        (:class:`RenewalEnded`): Ctrl+Q waits, and a card removal is the engine's to report."""
        return self._renewing

    @renewing.setter
    def renewing(self, value: bool) -> None:
        self._renewing = value

    async def action_quit(self) -> None:
        """Ctrl+Q: leave, except while a renewal writes to the card (it would be left unfinished:
        the engine finishes its current card step only on SIGTERM/SIGHUP)."""
        if self.renewing:
            self.notify("Your card is being updated. Wait until it has finished, then quit.",
                        title="Update in progress", severity="warning", markup=False)
            return
        await super().action_quit()

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
        if self.answers_too_early(event):
            return
        await super().on_event(event)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.kiosk and action in self.KIOSK_BLOCKED_ACTIONS:
            return False
        if action == "readers":
            return self.readers_pane_offered()
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
        if pane is not None:
            pane.went_idle()  # the logon pane clears a half-typed PIN

    def on_unmount(self) -> None:
        # Never wait for the card thread here: it may be waiting for this very UI (a dialog), and
        # the terminal is restored only after unmount. The card step under way finishes on its
        # own thread; :func:`run_app` waits for it after the terminal is restored.
        self.shutdown_event.set()
        self.backend.close(wait=False, cancel_pending=True)

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

    def _watch_service(self) -> None:
        """Start the current reader's presence watcher (a replaced reader's late reports are dropped)."""
        def presence_changed(present: bool) -> None:  # on the card watcher thread
            self.post_message(CardInserted() if present else CardRemoved())

        self.backend.watch(presence_changed)

    @on(ReaderChosen)
    def _reader_chosen(self, event: ReaderChosen) -> None:
        self.switch_reader(event.name, chosen=True)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The palette offers only the card commands valid on the current pane (its own list)."""
        yield from super().get_system_commands(screen)
        if isinstance(screen, Pane):
            yield from screen.system_commands()

    # -- card access ----------------------------------------------------------------------------
    async def read_summary(self) -> CardSummary:
        """Read the card through the door (no PIN needed); remembers and announces the result.

        Raises:
            CardRemovedError, NoCardError, PinBlockedError, CardError.
        """
        summary = await asyncio.wrap_future(self.backend.read_card(now=self.now()))
        self.summary = summary
        self.post_message(CardRead(summary))
        return summary

    # -- PIN and PUK tries ----------------------------------------------------------------------
    def note_tries(self, what: Literal["PIN", "PUK"], left: int | None) -> None:
        """Remember how the card answered a PIN (``what="PIN"``) or PUK entry: ``left`` tries
        (0: blocked; None: accepted, the counter is full again). Updates the summary's PIN tries
        and the panes (the Card tab stops offering the update once the PIN is blocked)."""
        self.tries_seen[what] = left
        if what == "PUK" and left is None:
            self.tries_seen["PIN"] = None  # an unlock resets the PIN counter too
        if what == "PIN" and self.summary is not None and self.summary.pin_retries != left:
            self.summary = dataclasses.replace(self.summary, pin_retries=left)
            for screen in self.screen_stack:
                if isinstance(screen, Pane):
                    screen.pin_tries_changed()

    async def tries_left(self, what: Literal["PIN", "PUK"] = "PIN") -> int | None:
        """The PIN or PUK tries left, asked of the card without spending one (the door's
        ``tries_left``), or as the card last answered in this session. None: unknown, or the PIN
        is verified (its counter is full)."""
        left = await asyncio.wrap_future(self.backend.tries_left(what))
        return left if left is not None else self.tries_seen.get(what)

    # -- the one error funnel ----------------------------------------------------------------
    def show_error(self, error: BaseException | Words, *, then: Callable[[], object] | None = None,
                   id: str = "error-dialog", button: str = "OK") -> None:
        """Show ``error`` — an exception, or the words of a refused state (:mod:`card.words`) — in
        an error dialog (:func:`tui.screens.dialogs.error_dialog`); call ``then()`` when it is
        closed. Every error reaches the screen through here."""
        words = error if isinstance(error, Words) else Words(*self.explain_error(error))
        self.push_screen(error_dialog(words, id=id, button=button), (lambda _: then()) if then is not None else None)
        if isinstance(error, (CardRemovedError, NoCardError)) and self.is_logged_on and not self.renewing:
            self.log_off(removed=True)

    @on(ErrorRaised)
    def _error_raised(self, event: ErrorRaised) -> None:
        then = event.then
        self.show_error(event.error, then=(lambda: self.post_message(then)) if then is not None else None,
                        id=event.id, button=event.button)

    # -- navigation --------------------------------------------------------------------------
    def goto(self, screen: Screen[Any]) -> None:
        """Replace the current pane (and any dialogs over it) with ``screen``."""
        async def switch() -> None:
            while len(self.screen_stack) > 2:
                await self.pop_screen()
            await self.switch_screen(screen)

        self.call_later(switch)

    def goto_logon(self) -> None:
        self.goto(LogonScreen())

    @on(GotoPane)
    def _goto_pane(self, event: GotoPane) -> None:
        """Logon; the Card tab (re-read; ``renewed``: what the last renewal did, ``stopped``: why the
        last update stopped, with its reference) or, logged off meanwhile, the logon pane; or what
        a renewal completed with errors did."""
        if event.pane == "completed-with-errors" and event.result is not None:
            self.goto(CompletedWithErrorsScreen(event.result, self.backend.settings.ra_contact))
        elif event.pane == "card" and self.is_logged_on:
            from tui.screens.card import CardScreen

            self.goto(CardScreen(event.renewed, event.stopped))
        else:
            self.goto_logon()

    @on(LoggedOn)
    def _logged_on(self) -> None:
        from tui.screens.card import CardScreen

        self.is_logged_on = True
        self.goto(CardScreen())

    @on(RenewalRequested)
    def _renewal_requested(self, event: RenewalRequested) -> None:
        """Show Write Certificates, which runs the renewal with the PIN; once: while a renewal is
        starting or running, another request (a PIN submitted twice) is dropped and its PIN wiped."""
        from tui.screens.write_certificates import WriteCertificatesScreen

        if self.renewing or self.shutdown_event.is_set():
            event.pin.wipe()
            return
        self.renewing = True  # from now on: Ctrl+Q waits, card removal is the engine's to report
        self.goto(WriteCertificatesScreen(event.pin, event.summary))

    @on(RenewalEnded)
    def _renewal_ended(self, event: RenewalEnded) -> None:
        self.renewing = False
        result = event.result
        if result is None:
            return
        self.last_result = result
        if isinstance(result.error, CardRemovedError) and not isinstance(result.error, TokenStorageError):
            # The service has already dropped the dead connection; the holder must log on again. (A token
            # that could not store the change never left its reader: the holder stays logged on, F-19.)
            self.is_logged_on = False
            self.summary = None

    @on(LogOffRequested)
    def _log_off_requested(self, event: LogOffRequested) -> None:
        self.log_off()
        if event.then is not None:
            self.call_later(self.post_message, event.then)

    def log_off(self, *, removed: bool = False, idle: bool = False) -> None:
        """Disconnect (the card forgets the PIN) and show the logged-off pane (kiosk: the logon pane).

        Args:
            removed: the card was removed. idle: the inactivity timeout ran out.
        """
        self.backend.log_off()
        self.is_logged_on = False
        self.summary = None
        if self.kiosk:
            reason = ("The card was removed, so you were logged off. " if removed else
                      "You were logged off after a period without activity. " if idle else "You are logged off. ")
            self.goto(LogonScreen(notice=reason + "Remove your card, then insert it and log on again to test it."))
        else:
            self.goto(LoggedOffScreen(removed=removed, idle=idle))

    # -- card presence: the pane under the dialogs says what it means (Pane.WHEN_CARD_REMOVED, hooks) --
    @on(CardRemoved)
    def _card_removed(self) -> None:
        self.card_present = False
        if self.renewing:
            return  # the engine reports it and keeps the journal for resume
        pane = self._pane()
        meaning = pane.WHEN_CARD_REMOVED if pane is not None else "policy"
        if pane is not None:
            pane.card_removed()
        if meaning == "end-session":
            self.backend.log_off()
            self.is_logged_on = False
        elif meaning == "policy" and self.is_logged_on:
            policy = self.backend.settings.removal_policy
            if policy == "logoff":
                self.log_off(removed=True)
            elif policy == "lock":
                self.backend.log_off()
                self.is_logged_on = False
                self.goto_logon()

    @on(CardInserted)
    def _card_inserted(self) -> None:
        was_absent = self.card_present is False
        self.card_present = True
        if not was_absent or self.renewing:
            return
        if (pane := self._pane()) is not None:
            pane.card_inserted()  # the logon pane reads the card; logged off, the logon pane returns

    def _pane(self) -> Pane | None:
        """The pane under any dialogs."""
        pane = self.screen_stack[1] if len(self.screen_stack) > 1 else None
        return pane if isinstance(pane, Pane) else None


def make_app(backend: Backend, *, now: Callable[[], dt.datetime] | None = None) -> CardRenewApp:
    """The cardrenew TUI on ``backend`` (``card.demo.demo_backend`` or ``card.backend.pcsc_backend``).

    Args:
        now: the clock for expiry arithmetic (aware UTC); None uses the system clock.
    """
    return CardRenewApp(backend, now=now)
