"""``cardrenew queue``: the renewal queue at the terminal (issue 15) — every reader with its card,
each due card renewed with the PIN its holder types at the prompt (which names the holder and the
reader), several cards at once (one card worker per reader), one line per card, and a summary.

``--watch`` keeps waiting for cards until Ctrl-C, SIGTERM or SIGHUP; the card steps under way then
finish (the engine stops before the next certificate), every reader is released and the summary
printed. ``--pin-stdin`` is refused: one PIN must never be sent to several cards.

Exit codes: 0 every card renewed or up to date; 13 some card was not renewed (failed, refused,
or left without a PIN); 2 ``--pin-stdin`` or no terminal to ask on; 3 no card in any reader
(without ``--watch``); 128 + signal: stopped by a signal without ``--watch``.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import io
import queue as stdlib_queue
import signal
import sys
import termios
import threading
from collections.abc import Iterator
from types import FrameType

from card import backend as assembly  # called through the module: tests put in-process readers there
from card.config import UsageError
from card.errors import CardChangedError, NoCardError
from card.secret import Secret
from card.service import EntryState, QueueEntry, ReaderQueue
from card.background import thread_during
from card.terminal_text import terminal_safe
from card.words import last_try_for, pin_for, queue_summary
from tui.cli.exit_codes import EXIT_OK, EXIT_PARTIAL
from tui.cli.output import print_notices, settings_for
from tui.cli.renew import RENEW_STEP_WAIT_S

POLL_S = 1.0
"""Seconds between two looks at the readers while nothing is asked."""
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
_SHOWN = (EntryState.DONE, EntryState.FAILED, EntryState.NOT_DUE, EntryState.REFUSED)
"""A card's line is printed when it reaches one of these (and when a wrong PIN sends it back to *due*)."""


class _Stopped(Exception):
    """A stop signal arrived while a prompt waited for the holder."""


class _Signals:
    """SIGTERM, SIGHUP, SIGINT: stop asking, end every wait, let the card steps under way finish."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.stopped = threading.Event()
        self.signum: int | None = None
        self.prompting = False
        self.previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
        for sig in _STOP_SIGNALS:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self.stopped.set()
        self.cancel.set()
        if self.prompting:
            self.prompting = False
            raise _Stopped

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def prompt_pin(text: str) -> str:
    """Ask for a PIN at the terminal, not echoed (the prompt names the holder and the reader)."""
    return getpass.getpass(text)


def prompt_yes(text: str) -> bool:
    with _echo(True):
        return input(text).strip().lower() in ("y", "yes")


@contextlib.contextmanager
def _echo(on: bool) -> Iterator[None]:
    """The terminal's echo on or off for a while (tester F-14: between the prompts of ``--watch``,
    whatever the holder types — a PIN typed too early — is not shown; the next prompt discards it)."""
    try:
        fd = sys.stdin.fileno()
        before = termios.tcgetattr(fd)
    except (OSError, ValueError, termios.error, AttributeError, io.UnsupportedOperation):
        yield  # not a real terminal (tests replace stdin)
        return
    after = list(before)
    after[3] = (after[3] | termios.ECHO) if on else (after[3] & ~termios.ECHO)
    termios.tcsetattr(fd, termios.TCSAFLUSH, after)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, before)


def cmd_queue(args: argparse.Namespace) -> int:
    """Renew every due card in every reader, each with its own holder's PIN; returns the exit code."""
    if args.pin_stdin:
        raise UsageError("--pin-stdin is refused by `cardrenew queue`: one PIN must never be sent to several cards",
                         next_step="Let each card holder type their own PIN when the queue asks for it. To renew "
                                   "one card from a script, use `cardrenew renew --reader NAME --pin-stdin`.")
    if not sys.stdin.isatty():
        raise UsageError("`cardrenew queue` asks each card holder for their PIN at the terminal, and standard input "
                         "is not a terminal",
                         next_step="Run it in a terminal (ssh -t for a remote host).")
    settings = settings_for(args)
    if settings.token.is_pkcs11:  # tester F-23: never renew the PIV cards in the readers instead of the token
        raise UsageError("`cardrenew queue` renews the PIV cards in the PC/SC readers; this configuration names a "
                         "PKCS#11 token (card.interface = \"pkcs11\")",
                         next_step="Renew the token with `cardrenew renew` (or the TUI). Nothing was sent to any card.")
    cancel = threading.Event()
    signals = _Signals(cancel)
    try:
        backend = assembly.pcsc_backend(settings, None, wait_for_card=True, cancel=cancel)
    except BaseException:
        signals.restore()
        raise
    run = _QueueRun(backend, signals, watch=args.watch)
    try:
        with _echo(False):
            return run.run()
    finally:
        signals.restore()
        run.queue.close(wait=True, timeout_s=RENEW_STEP_WAIT_S)
        backend.close(wait=True, timeout_s=5)
        print_notices(backend)


class _QueueRun:
    """The loop: look at the readers, ask the next due card's holder for the PIN, print lines."""

    def __init__(self, backend: assembly.Backend, signals: _Signals, *, watch: bool) -> None:
        self.signals = signals
        self.watch = watch
        self.lines: stdlib_queue.SimpleQueue[QueueEntry] = stdlib_queue.SimpleQueue()
        self.printed: dict[str, tuple[object, ...]] = {}
        self.pin_characters = backend.settings.pin_characters
        self.declined: dict[str, str | None] = {}
        """Reader → the card whose holder skipped its PIN there (asked again once it is put in again)."""
        self.skipped: set[str | None] = set()
        self.queue = ReaderQueue(backend, self._changed)

    def _changed(self, entry: QueueEntry) -> None:  # on a card worker or the polling thread
        if entry.state in (EntryState.READING, EntryState.NO_CARD, EntryState.GONE):
            self.declined.pop(entry.reader, None)  # a card (re-)inserted is a new arrival: ask again (F-15)
        if entry.state in _SHOWN or (entry.state is EntryState.DUE and entry.message):
            self.lines.put(entry)

    def run(self) -> int:
        try:
            while not self.signals.stopped.is_set():
                self.queue.poll()
                self._print_lines()
                if self._ask_next():
                    continue
                if not self.watch and self._settled():
                    break
                self.signals.stopped.wait(POLL_S)
        except _Stopped:
            pass
        if self.signals.stopped.is_set():
            _say("Stopping: the card steps under way finish, then every reader is released.")
        self.queue.close(wait=True, timeout_s=RENEW_STEP_WAIT_S)
        self._print_lines()
        return self._summary()

    def _settled(self) -> bool:
        """Nothing is being read or renewed, and no due card is left to ask for."""
        for entry in self.queue.entries():
            if entry.state in (EntryState.READING, EntryState.RENEWING, EntryState.WAITING_PIN):
                return False
            if entry.state is EntryState.DUE and not self._declined(entry):
                return False
        return True

    def _declined(self, entry: QueueEntry) -> bool:
        return entry.reader in self.declined and self.declined[entry.reader] == entry.card_id

    def _ask_next(self) -> bool:
        """Ask the holder of the next due card for the PIN and start its renewal; False: none due."""
        for entry in self.queue.entries():
            if entry.state is EntryState.DUE and not self._declined(entry):
                self._ask(entry)
                return True
        return False

    def _ask(self, due: QueueEntry) -> None:
        asked = self.queue.ask_pin(due.reader)
        if asked is None:
            return
        _say(f"{asked.reader} | {asked.holder or '-'} | due: {asked.due}")
        self.signals.prompting = True
        try:
            text = f"{pin_for(asked.holder, asked.reader)} (Enter to skip this card): "
            with self._lines_while(text):  # other readers' lines are not held back by this prompt (F-15)
                pin = Secret(prompt_pin(text))
            confirmed = False
            if pin and asked.pin_retries == 1:
                confirmed = prompt_yes(last_try_for(asked.holder) + " [y/N] ")
                if not confirmed:
                    pin.wipe()
        finally:
            self.signals.prompting = False
        if pin and not pin.consists_of(self.pin_characters):  # tester F-22: an arrow key never spends a try
            pin.wipe()
            self.queue.pin_not_given(asked.reader, asked.card_id)
            _say(f"{asked.reader} | {asked.holder or '-'} | PIN not sent — it holds a character a PIN cannot "
                 "contain (an arrow key or a tab counts too). No try was used; type it again.")
            return
        if not pin:
            self.declined[asked.reader] = asked.card_id
            self.skipped.add(asked.card_id)
            self.queue.pin_not_given(asked.reader, asked.card_id)
            _say(f"{asked.reader} | {asked.holder or '-'} | skipped — no PIN sent; the card was not renewed.")
            return
        self.skipped.discard(asked.card_id)
        try:
            self.queue.renew(asked.reader, asked.card_id, pin, allow_last_try=confirmed)
        except CardChangedError as exc:
            _say(f"{asked.reader} | {asked.holder or '-'} | PIN not sent — {exc.title}. {exc.next_step}")

    @contextlib.contextmanager
    def _lines_while(self, prompt: str) -> Iterator[None]:
        """While a PIN prompt waits, print the other cards' lines as they come, above the prompt:
        on a terminal the prompt's line is cleared and the prompt written again under the new lines
        (the PIN is not echoed, so nothing typed is lost from view)."""
        def follow(done: threading.Event) -> None:
            while not done.wait(POLL_S):
                self._print_lines(redraw=prompt)

        with thread_during(follow, "queue-lines"):
            yield

    def _print_lines(self, redraw: str | None = None) -> None:
        """Print the lines of the cards whose state changed; ``redraw``: a prompt is open on this
        terminal — clear its line first and write it again after."""
        lines: list[str] = []
        while True:
            try:
                entry = self.lines.get_nowait()
            except stdlib_queue.Empty:
                break
            key = entry.card_id or entry.reader
            shown = (entry.state, entry.message, entry.reference)
            if self.printed.get(key) != shown:
                self.printed[key] = shown
                lines.append(terminal_safe(entry.line()))
        if not lines:
            return
        on_terminal = redraw is not None and sys.stdout.isatty()
        text = "".join(line + "\n" for line in lines)
        sys.stdout.write(f"\r\x1b[2K{text}{redraw}" if on_terminal else text)
        sys.stdout.flush()

    def _summary(self) -> int:
        counts = self.queue.summary()
        if not self.watch and not self.queue.cards():
            raise NoCardError("no card in any reader", next_step="Insert the cards, then run `cardrenew queue` "
                                                                 "again (or `cardrenew queue --watch` to wait for them).")
        skipped = sum(1 for card in self.queue.cards() if card.card_id in self.skipped
                      and card.state in (EntryState.DUE, EntryState.WAITING_PIN))
        print(f"Summary: {queue_summary(counts['renewed'], counts['failed'] - skipped, counts['not_due'], skipped)}",
              flush=True)
        if self.signals.signum is not None and not self.watch:
            return 128 + self.signals.signum
        return EXIT_OK if counts["failed"] == 0 else EXIT_PARTIAL


def _say(text: str) -> None:
    print(terminal_safe(text), flush=True)
