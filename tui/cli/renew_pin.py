"""``renew``'s PIN handling and progress: reading the PIN, the last-try guard, the step printer."""

from __future__ import annotations

import argparse
import getpass
import sys

from card.config import Settings, UsageError
from card.errors import LastPinTryError, PinBlockedError
from card.piv import PivSession, Slot
from card.renewal import RenewalStep, SlotResult
from card.secret import Secret, read_secret_line
from card.terminal_text import terminal_safe


class PrintReporter:
    """The engine's progress (:class:`card.renewal.RenewalReporter`) as lines on stderr; quiet with ``--json``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def step(self, slot: Slot | None, step: RenewalStep, detail: str = "") -> None:
        if not self.quiet:
            where = f"[{slot.hex}] " if slot is not None else ""
            print(terminal_safe(f"  {where}{step.value}" + (f": {detail}" if detail else ""), keep_newlines=True),
                  file=sys.stderr)

    def slot_finished(self, slot: Slot, result: SlotResult) -> None:
        pass


def read_pin(args: argparse.Namespace) -> Secret:
    """The PIN from the first line of stdin (``--pin-stdin``) or the terminal, as a Secret; the
    caller's renewal wipes it.

    Raises:
        UsageError: there is none (no try used).
    """
    if args.pin_stdin:
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):  # stdin replaced by a text object (in-process callers)
            pin = Secret(sys.stdin.readline().rstrip("\r\n"))
        else:
            pin = read_secret_line(fd)  # byte by byte: no buffer or string keeps a copy
        if not pin:
            raise UsageError("--pin-stdin: no PIN on standard input",
                             next_step="Give the PIN as the first line of standard input. No try was used.")
        return pin
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the PIN",
                         next_step="Run with --pin-stdin and give the PIN on standard input.")
    return Secret(getpass.getpass("PIN: "))


def guard_last_pin_try(session: PivSession, allowed: bool) -> None:
    """Before the engine sends the PIN, in the same card transaction: refuse when one try is left
    and spending it was not allowed. The count comes from an empty VERIFY (no try spent, SP 800-73-4
    Part 2 §3.2.1); a blocked PIN is reported without sending it.

    Raises:
        LastPinTryError: one try left, not allowed; PinBlockedError: no try left.
    """
    if allowed:
        return
    retries = session.get_pin_retries()  # raises PinBlockedError on 69 83
    if retries == 0:
        raise PinBlockedError("The PIN is blocked.")
    if retries == 1:
        raise LastPinTryError("only 1 PIN try is left; a wrong PIN would block the card; run again with "
                              "--allow-last-pin-try or use the TUI")


def warn_default_management_key(settings: Settings, args: argparse.Namespace) -> None:
    """Say on stderr (not with ``--json``) that the well-known management key is in use."""
    if settings.uses_default_management_key and not args.json:
        print("Warning: using the well-known default management key (allowed by the configuration).", file=sys.stderr)
