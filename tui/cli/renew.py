"""``cardrenew renew``: the headless renewal, with the same engine as the TUI.

Exit codes: 0 renewed, 4 PIN (wrong, blocked, last try not allowed), 10 nothing due, 11 refused,
12 the CA, 13 not every certificate renewed; 128 + signal when stopped before the card changed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from types import FrameType
from typing import TypeVar

from card import backend as assembly  # called through the module: tests put an in-process card there
from card.backend import Backend
from card.config import UsageError
from card.errors import OperationCancelled
from card.secret import Secret
from card.service import CardSummary, RenewalRefused, RenewalRequest, RenewalResult, UpdateCheck, update_check
from card.words import Words, renewal_mode_words, slot_names, update_words
from tui.cli.demo import cli_demo_backend
from tui.cli.exit_codes import EXIT_NOT_DUE, EXIT_OK
from tui.cli.failure import fail
from tui.cli.output import out, print_notices, settings_for
from tui.cli.renew_pin import PrintReporter, read_pin, warn_default_management_key
from tui.cli.renew_report import report_renewal
from tui.cli.status import token_json

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
RENEW_STEP_WAIT_S = 60.0
"""After a stop signal, the longest wait for the card step under way (the TUI's ``CARD_STEP_WAIT_S``):
a card that stops answering (break-it finding 14: GENERATE answered 150 s later) is then left to the
journal, which was saved before the step, and ``renew`` ends with 128 + signal."""
T = TypeVar("T")


class _StopOnSignal:
    """SIGTERM, SIGHUP and SIGINT during ``renew``: finish the current card step, then stop
    (``cancel`` also ends any wait at once: the CA's reply, the RA hook, a back-off, a poll)."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.stopped_by: list[int] = []
        self.stopped_at: float | None = None
        self.gave_up = False
        """The card step under way did not end within :data:`RENEW_STEP_WAIT_S` of the signal."""
        self.previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
        for sig in self.previous:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.cancel.is_set():
            print("Stopping after the current card step; the journal keeps what was done.", file=sys.stderr)
            self.stopped_by.append(signum)
            self.stopped_at = time.monotonic()
        self.cancel.set()

    def result(self, future: Future[T]) -> T:
        """``future.result()``, but after a stop signal no longer than :data:`RENEW_STEP_WAIT_S`.

        Raises:
            OperationCancelled: the card step under way did not end in time (``gave_up``).
        """
        while True:
            try:
                return future.result(timeout=0.2)
            except FutureTimeout:
                if self.stopped_at is not None and time.monotonic() - self.stopped_at > RENEW_STEP_WAIT_S:
                    self.gave_up = True
                    raise OperationCancelled(
                        f"stopped; the card did not answer within {RENEW_STEP_WAIT_S:.0f} s of the signal, so the "
                        "card step under way was left unfinished (the journal was saved before it)",
                        next_step="Run `cardrenew renew` again: an unfinished update resumes where it stopped. "
                                  "If the card still does not answer, remove it and insert it again first.") from None

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def cmd_renew(args: argparse.Namespace) -> int:
    """Read the card, check what is due, ask (unless ``--yes``), renew; returns the exit code."""
    if getattr(args, "check", False):  # the dry run: tui/cli/check.py
        from tui.cli.check import cmd_check

        return cmd_check(args)
    settings = settings_for(args)
    stop = _StopOnSignal()
    try:
        if args.demo:
            backend = cli_demo_backend(args, settings)
        else:
            backend = assembly.card_backend(settings, args.reader, cancel=stop.cancel)
    except BaseException:
        stop.restore()
        raise
    seen: list[CardSummary] = []
    try:
        outcome = _check_and_renew(args, backend, stop, seen)
    except Exception as exc:  # noqa: BLE001 - mapped to documented exit codes
        if isinstance(exc, OperationCancelled) and stop.stopped_by:
            return fail(args, exc, code=128 + stop.stopped_by[0])
        return fail(args, exc)
    finally:
        stop.restore()
        backend.close(wait=not stop.gave_up)  # a card that stopped answering is not waited for again
        print_notices(backend)
    if isinstance(outcome, int):
        return outcome
    if stop.stopped_by and isinstance(outcome.error, OperationCancelled) and not outcome.journal_kept:
        return fail(args, outcome.error, code=128 + stop.stopped_by[0])  # nothing changed on the card (finding 8)
    return report_renewal(args, outcome, token_json(seen[-1]) if seen else None)


def _say_mode(args: argparse.Namespace, summary: CardSummary, seen: list[CardSummary]) -> None:
    """Before a renewal: the token and how it is renewed (issue 14), on stderr (``--json``: in the report)."""
    seen.append(summary)
    if not args.json:
        mode = renewal_mode_words(summary.info.side_by_side)
        print(f"Renewal {mode.title.lower()}: {mode.message}", file=sys.stderr)


def _check_and_renew(args: argparse.Namespace, backend: Backend, stop: _StopOnSignal,
                     seen: list[CardSummary]) -> int | RenewalResult:
    """The update check, then the renewal: an exit code when the run ends here, else the result
    (``seen`` gets the card as read before it was renewed)."""
    cancel = stop.cancel
    settings = backend.settings
    progress = PrintReporter(args.json)
    if args.yes and args.pin_stdin:
        # Nothing is asked between the update check and the renewal, so both run in one card
        # transaction and the engine renews from the check's reading instead of reading the
        # card again (the PIN is read from stdin in between, as before: after the check).
        def pin_then_warn() -> Secret:
            pin = read_pin(args, backend.settings.pin_characters)
            if not (seen and seen[-1].info.side_by_side):  # a side-by-side token has no PIV management key
                warn_default_management_key(settings, args)
            return pin

        first = stop.result(backend.read_card())
        if update_check(first) in (UpdateCheck.AVAILABLE, UpdateCheck.RESUME):
            _say_mode(args, first, seen)
            reach_ca_first(backend, cancel)
        summary, result = stop.result(backend.renew_if_due(RenewalRequest(
            pin_then_warn, progress, cancel=cancel, refuse_last_try=not args.allow_last_pin_try)))
    else:
        summary, result = stop.result(backend.read_card()), None
    check = update_check(summary)
    words = update_words(summary, check, settings.window_days, settings.ra_contact)
    if check is UpdateCheck.EXPIRED and words is not None:
        raise RenewalRefused(words.message, next_step=words.next_step)
    if words is not None:  # up to date, or nothing to renew
        return _not_due(args, summary, words, settings.window_days)
    if result is not None:
        return result
    allow_last_try = args.allow_last_pin_try
    if summary.pin_retries == 1 and not allow_last_try and not args.pin_stdin and sys.stdin.isatty():
        answer = input("Only 1 PIN try is left: a wrong PIN would block the card. Send the PIN? [y/N] ")
        allow_last_try = answer.strip().lower() in ("y", "yes")
    _say_mode(args, summary, seen)
    pin = read_pin(args, backend.settings.pin_characters)
    if not args.yes and not _confirmed(summary, pin):
        return EXIT_OK
    if not summary.info.side_by_side:  # a side-by-side token has no PIV management key
        warn_default_management_key(settings, args)
    try:
        reach_ca_first(backend, cancel)
    except BaseException:
        pin.wipe()
        raise
    # the door wipes the PIN whatever the outcome; with one try left it refuses in the renewal's
    # own card transaction, before the PIN is sent
    return stop.result(backend.renew(RenewalRequest(pin, progress, cancel=cancel, refuse_last_try=not allow_last_try)))


def reach_ca_first(backend: Backend, cancel: threading.Event) -> None:
    """The CA before the card transaction (:meth:`~card.backend.Backend.reach_ca`, break-it finding 1).

    Raises:
        IssuerError (exit 12), OperationCancelled (a signal).
    """
    backend.reach_ca(cancel)


def _not_due(args: argparse.Namespace, summary: CardSummary, words: Words, window_days: int) -> int:
    """Nothing to renew now: say why (exit 10, ``outcome: up_to_date``)."""
    nxt = summary.next_renewal_date(window_days)
    text = words.message + (f"\nNext step: {words.next_step}" if words.next_step else "")
    out(args, {"outcome": "up_to_date", "message": words.message, "next_step": words.next_step or None,
               "next_renewal_date": nxt.isoformat() if nxt else None, "slots": [], "reference": None,
               "exit_code": EXIT_NOT_DUE}, text)
    return EXIT_NOT_DUE


def _confirmed(summary: CardSummary, pin: Secret) -> bool:
    """Ask before renewing; False (the PIN wiped, "Cancelled" said) unless the answer is yes.

    Raises:
        UsageError: no terminal to ask on (exit 2; ``--yes`` renews without asking).
    """
    what = ("resume the unfinished update " + summary.pending_journal.reference) if summary.pending_journal \
        else "renew " + slot_names(summary.due)
    if not sys.stdin.isatty():
        raise UsageError("confirmation needed", next_step="Run with --yes to renew without asking.")
    answer = input(f"About to {what}. {renewal_mode_words(summary.info.side_by_side).message} Continue? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        pin.wipe()
        print("Cancelled; nothing was changed.")
        return False
    return True


