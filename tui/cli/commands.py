"""The one table from a parsed command line to the function that runs it.

A key is ``(subcommand, its sub-subcommand)`` — ``(None, None)`` is the TUI. The target names a
module and a function: the module is imported only when its command runs, so ``--help`` and the
TUI's start-up never import another subcommand's libraries (the engine, the CA, pyscard, aiohttp).
Adding a subcommand: its module here in tui/cli/, its arguments in :mod:`tui.cli.parser`, one line here.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Final

Handler = Callable[[argparse.Namespace], int]

COMMANDS: Final[dict[tuple[str | None, str | None], str]] = {
    (None, None): "tui.cli.interactive:cmd_tui",
    ("status", None): "tui.cli.status:cmd_status",
    ("renew", None): "tui.cli.renew:cmd_renew",
    ("change-pin", None): "tui.cli.pin:cmd_change_pin",
    ("unblock", None): "tui.cli.pin:cmd_unblock",
    ("queue", None): "tui.cli.queue:cmd_queue",
    ("audit", None): "tui.cli.audit:cmd_audit",
    ("serve", None): "tui.cli.serve:cmd_serve",
    ("ca", "init"): "tui.cli.ca:cmd_ca_init",
    ("emulator", "create"): "tui.cli.emulator:cmd_emulator_create",
    ("emulator", "serve"): "tui.cli.emulator:cmd_emulator_serve",
}


def command_key(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The :data:`COMMANDS` key of a parsed command line."""
    command: str | None = args.command
    return command, getattr(args, "ca_command", None) or getattr(args, "emulator_command", None)


def handler_for(args: argparse.Namespace) -> Handler:
    """The function that runs this command line (its module imported now)."""
    module, _, function = COMMANDS[command_key(args)].partition(":")
    handler: Handler = getattr(importlib.import_module(module), function)
    return handler
