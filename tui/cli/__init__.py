"""The command line (DESIGN §7): the TUI (no subcommand) or a headless subcommand.

One module per subcommand — :mod:`tui.cli.status`, :mod:`~tui.cli.renew`, :mod:`~tui.cli.audit`,
:mod:`~tui.cli.serve`, :mod:`~tui.cli.ca`, :mod:`~tui.cli.emulator`, :mod:`~tui.cli.interactive`
(the TUI) — found through the one table :data:`tui.cli.commands.COMMANDS`; the arguments are
:mod:`tui.cli.parser`, the exit codes :mod:`tui.cli.exit_codes`, what is printed
:mod:`tui.cli.output` and errors to exit codes :mod:`tui.cli.failure`. A subcommand's module is
imported only when it runs, so the TUI's start-up and ``--help`` import no engine, CA or pyscard.
"""

from __future__ import annotations

from tui.cli.entry import main
from tui.cli.exit_codes import (
    EXIT_CA,
    EXIT_CARD,
    EXIT_CODES,
    EXIT_ERROR,
    EXIT_NOT_DUE,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_PIN,
    EXIT_REFUSED,
    EXIT_USAGE,
)

__all__ = ["EXIT_CA", "EXIT_CARD", "EXIT_CODES", "EXIT_ERROR", "EXIT_NOT_DUE", "EXIT_OK", "EXIT_PARTIAL", "EXIT_PIN",
           "EXIT_REFUSED", "EXIT_USAGE", "main"]
