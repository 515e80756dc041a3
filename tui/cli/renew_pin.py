"""``renew``'s PIN and progress: reading the PIN, the management-key warning, the step printer."""

from __future__ import annotations

import argparse
import getpass
import sys

from card.config import Settings, UsageError
from card.errors import PinFormatError
from card.secret import Secret, read_secret_line
from card.service import ProgressKey, RenewalStep, SlotResult, key_name
from card.terminal_text import terminal_safe


class PrintReporter:
    """The engine's progress (:class:`card.renewal.RenewalReporter`) as lines on stderr; quiet with ``--json``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def step(self, slot: ProgressKey | None, step: RenewalStep, detail: str = "") -> None:
        if not self.quiet:  # "[9A]" for a PIV slot, "[Authentication]" for a token key (tester F-19)
            where = f"[{key_name(slot)}] " if slot is not None else ""
            print(terminal_safe(f"  {where}{step.value}" + (f": {detail}" if detail else ""), keep_newlines=True),
                  file=sys.stderr)

    def slot_finished(self, slot: ProgressKey, result: SlotResult) -> None:
        pass


def read_pin(args: argparse.Namespace, pin_characters: str) -> Secret:
    """The PIN from the first line of stdin (``--pin-stdin``) or the terminal, as a Secret holding
    only ``pin_characters`` (``ui.pin_characters``); the caller's renewal wipes it.

    Raises:
        UsageError: there is none (no try used).
        PinFormatError: it holds another character (an arrow key's ``ESC [ A``, a tab; tester F-3):
            nothing is sent, no try is used.
    """
    return pin_characters_only(_read_pin(args), pin_characters)


def pin_characters_only(pin: Secret, pin_characters: str) -> Secret:
    """``pin`` if it holds only ``pin_characters`` — the rule of the TUI's PIN fields, for every PIN
    the CLI reads (``renew``, ``renew --check``; tester F-3: an arrow key must not spend a try).

    Raises:
        PinFormatError: nothing sent, no try used (the PIN wiped).
    """
    if pin.consists_of(pin_characters):
        return pin
    text = pin.is_text
    pin.wipe()
    if not text:  # undecodable bytes (a Latin-1 terminal, line noise): say so, as check_pin_format does
        raise PinFormatError("The PIN contains bytes that are not valid text; nothing was sent to the card.",
                             next_step="Type it again with PIN characters only. No try was used.")
    raise PinFormatError("the PIN holds a character a PIN cannot contain (ui.pin_characters; an arrow key or a tab "
                         "counts too); nothing was sent to the card", next_step="Type it again with PIN characters "
                         "only. No try was used.")


def stdin_secret() -> Secret:
    """The next line of standard input as a Secret (``--pin-stdin``; empty at end of input)."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # stdin replaced by a text object (in-process callers)
        return Secret(sys.stdin.readline().rstrip("\r\n"))
    return read_secret_line(fd)  # byte by byte: no buffer or string keeps a copy


def _read_pin(args: argparse.Namespace) -> Secret:
    if args.pin_stdin:
        pin = stdin_secret()
        if not pin:
            raise UsageError("--pin-stdin: no PIN on standard input",
                             next_step="Give the PIN as the first line of standard input. No try was used.")
        return pin
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the PIN",
                         next_step="Run with --pin-stdin and give the PIN on standard input.")
    return Secret(getpass.getpass("PIN: "))


def warn_default_management_key(settings: Settings, args: argparse.Namespace) -> None:
    """Say on stderr (not with ``--json``) that the well-known management key is in use."""
    if settings.uses_default_management_key and not args.json:
        print("Warning: using the well-known default management key (allowed by the configuration).", file=sys.stderr)
