"""What the headless subcommands print: JSON or terminal-safe text, notices, the CLI's next steps."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping

from card.config import Settings, load_settings
from card.backend import Backend
from card.terminal_text import terminal_safe

JsonObject = Mapping[str, object]


def wants_json(args: argparse.Namespace) -> bool:
    """``--json`` was given (only ``status`` and ``renew`` have it)."""
    return bool(getattr(args, "json", False))


def out(args: argparse.Namespace, payload: JsonObject, text: str) -> None:
    """Print ``payload`` as JSON (``--json``) or ``text`` (terminal-safe) on stdout."""
    if wants_json(args):
        print(json.dumps(payload, indent=2, sort_keys=True))
    else:
        print(terminal_safe(text, keep_newlines=True))  # outside text (names, reasons) is never a terminal command


def warn(text: str) -> None:
    """One line on stderr, terminal-safe (names and reasons in it are outside text)."""
    print(terminal_safe(text, keep_newlines=True), file=sys.stderr)


def cli_next_step(next_step: str | None) -> str | None:
    """A card-layer next step in the CLI's words: the TUI's "from the Card tab" becomes the command."""
    if not next_step:
        return next_step
    return next_step.replace("from the Card tab", "with `cardrenew renew`")


def print_notices(backend: Backend) -> None:
    """Say in words what happened to files on the way (a journal set aside), on stderr."""
    for notice in backend.journals.take_notices():
        warn(f"cardrenew: note: {notice}")


def settings_for(args: argparse.Namespace) -> Settings:
    """The configuration of ``--config`` (or the usual places) with ``--reader`` applied.

    Raises:
        ConfigError: the file is unreadable or invalid (exit 2).
    """
    return load_settings(args.config, reader=getattr(args, "reader", None))
