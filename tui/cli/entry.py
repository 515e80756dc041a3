"""``cardrenew``'s ``main``: parse, set up logging, refuse misplaced ``--demo``, dispatch by
:data:`tui.cli.commands.COMMANDS`, and map every error to its exit code (:mod:`tui.cli.failure`)."""

from __future__ import annotations

import argparse
import logging
import sys

from card.apdu import TRAFFIC
from card.config import UsageError
from card.secret import harden_process
from card.terminal_text import terminal_safe
from tui.cli.commands import handler_for
from tui.cli.parser import build_parser

DEMO_COMMANDS = (None, "status", "renew", "audit", "serve", "change-pin", "unblock")
"""Where ``--demo`` is allowed (None: the TUI)."""


class OncePerRun(logging.Filter):
    """Lets each distinct warning through once per run (a full disk made the same journal
    warning appear once per save: six times), its message made terminal-safe (a reader name or a
    CA's reason is outside text: :func:`card.terminal_text.terminal_safe`)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = terminal_safe(record.getMessage(), keep_newlines=True)
        if record.args or message != record.msg:
            record.msg, record.args = message, None
        if record.levelno < logging.WARNING:
            return True
        key = (record.levelno, message)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def main(argv: list[str]) -> int:
    """Run ``cardrenew`` with ``argv`` (without the program name); returns the exit code
    (:mod:`tui.cli.exit_codes`). ``--help`` and usage errors raise SystemExit (argparse)."""
    once = OncePerRun()
    handlers = [logging.lastResort, *logging.getLogger().handlers]
    for handler in handlers:
        if handler is not None:
            handler.addFilter(once)
    try:
        return _main(argv, once)
    finally:
        for handler in [logging.lastResort, *logging.getLogger().handlers]:
            if handler is not None:
                handler.removeFilter(once)


def _main(argv: list[str], once: logging.Filter) -> int:
    harden_process()  # before any secret is read: no core dump, no ptrace by others (issue 12)
    args = build_parser().parse_args(argv)
    args.verbose += getattr(args, "verbose_after", 0)  # -v before and after the subcommand add up
    if args.verbose:
        logging.basicConfig(level=TRAFFIC if args.verbose > 1 else logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        for handler in logging.getLogger().handlers:
            handler.addFilter(once)
    try:
        check_demo_usage(args)
        return handler_for(args)(args)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one funnel to exit codes
        from tui.cli.failure import fail  # lazy: it imports the engine's errors, which the TUI's start-up needs not

        return fail(args, exc)


def check_demo_usage(args: argparse.Namespace) -> None:
    """Refuse ``--demo`` with ``--reader`` or with a subcommand that has no demo, and a
    ``--demo-fault`` without ``--demo`` (it would be ignored: the real card would be used).

    Raises:
        UsageError: ``--demo`` or ``--demo-fault`` where it does not belong (exit 2).
    """
    if not getattr(args, "demo", False):
        if getattr(args, "demo_fault", "none") != "none":
            raise UsageError("--demo-fault shows an error path of the built-in virtual card: it goes with --demo",
                             next_step="Add --demo, or leave out --demo-fault.")
        return
    if args.reader:
        raise UsageError("--demo uses the built-in virtual card, not a reader: it does not go with --reader",
                         next_step="Leave out --demo, or --reader.")
    if args.command not in DEMO_COMMANDS:
        raise UsageError(f"--demo goes with the TUI, status, renew, change-pin, unblock, serve and audit, not with {args.command}",
                         next_step="Leave out --demo.")
