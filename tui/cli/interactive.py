"""``cardrenew`` without a subcommand: the TUI, on PC/SC readers or (``--demo``) the virtual card."""

from __future__ import annotations

import argparse
import os
import sys
import threading

from card import backend as assembly  # called through the module: tests stand in for it there
from card.backend import Backend
from card.config import ConfigError, Settings, UsageError, load_settings
from card.demo import lazy_demo_backend
from tui.app import make_app, run_app
from tui.cli.exit_codes import EXIT_USAGE
from tui.cli.output import warn
from tui.driver import driver_class, terminal_problem


def cmd_tui(args: argparse.Namespace) -> int:
    """Run the TUI; returns its exit code (2: no terminal on stdin, nothing started; 128 + signal
    when ended by SIGTERM, SIGHUP or SIGINT; 1 after a crash, never 0)."""
    if (problem := terminal_problem(sys.stdin, os.environ)) is not None:
        warn(f"cardrenew: {problem}")
        return EXIT_USAGE  # nothing was started, nothing spins
    settings = load_settings(args.config, reader=args.reader, kiosk=args.kiosk, theme=args.theme)
    stop: threading.Event | None = None
    if args.demo:
        backend = lazy_demo_backend(settings, fault=args.demo_fault)  # the card is made after the first frame
    else:
        stop = threading.Event()  # no card yet (wait_for_card): the logon pane asks for it
        backend = tui_backend(settings, args.reader, stop)
    app = make_app(backend)
    app.driver_class = driver_class() or app.driver_class  # undecodable input never ends the app
    # SIGTERM, SIGHUP (an SSH session dropped) and SIGINT: the UI ends at once, the current card
    # step finishes (journalled), waits for the CA or another program's hold end (``stop``); 128 + signal.
    # A crash (also Textual's panic path, which leaves no return code) exits 1, never 0.
    return run_app(app, cancel=stop)


def tui_backend(settings: Settings, reader: str | None, stop: threading.Event) -> Backend:
    """The TUI's backend on PC/SC (or a PKCS#11 token). A configuration whose ``[issuer]`` cannot be
    used (none written yet: ``issuer.directory is needed``) does not keep the TUI from starting: the
    holder can log on, look at the card and change the PIN, and *Update My Card* or *Check* shows the
    configuration error with the file to fix (``Backend.issuer_problem``; fresh-user finding 10).

    Raises:
        ConfigError: the rest of the configuration is wrong too (a usage error, the token's module).
    """
    try:
        return assembly.card_backend(settings, reader, wait_for_card=True, cancel=stop)
    except UsageError:
        raise
    except ConfigError as problem:
        backend = assembly.card_backend(settings, reader, with_issuer=False, wait_for_card=True, cancel=stop)
        backend.issuer_problem = problem.naming(settings.source)  # says no file was found, and where to write one
        return backend
