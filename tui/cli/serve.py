"""``cardrenew serve``: the TUI in a browser kiosk (see :data:`tui.cli.parser.SERVE_HELP`, :mod:`tui.serve`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from card import backend as assembly  # called through the module: tests stand in for it there
from card.config import UsageError
from tui import serve as kiosk  # called as kiosk.serve: tests stand in for the server there
from tui.cli.output import settings_for


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the app; each browser session runs ``cardrenew`` with these options.

    Raises:
        UsageError: ``--port`` is not a TCP port; ConfigError: the configuration is invalid (both
        exit 2, before anything is served).
    """
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: not a TCP port")
    if not args.demo:
        # The configuration errors the TUI would give each browser session (which then just dies,
        # its message only in the server's terminal), given once here, before anything is served.
        assembly.build_issuer(settings_for(args))
    return kiosk.serve(_app_args(args), host=args.host, port=args.port, public_url=args.public_url)


def _app_args(args: argparse.Namespace) -> list[str]:
    """The command line each session's ``cardrenew`` gets."""
    app_args: list[str] = []
    if args.config:
        app_args += ["--config", str(Path(args.config).resolve())]
    if getattr(args, "reader", None):
        app_args += ["--reader", args.reader]
    if args.demo:
        app_args.append("--demo")
        if args.demo_fault != "none":
            app_args += ["--demo-fault", args.demo_fault]
    if args.kiosk:
        app_args.append("--kiosk")
    if args.theme:
        app_args += ["--theme", args.theme]
    return app_args
