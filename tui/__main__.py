"""``cardrenew`` entry point: the TUI (default), or a headless subcommand (DESIGN §7).

The command line is the package :mod:`tui.cli` (one module per subcommand); importing it imports
no Textual, engine or CA: a subcommand's module is imported when it runs.
"""

from __future__ import annotations

import sys

from tui import cli


def main(argv: list[str] | None = None) -> int:
    """Run cardrenew; returns the process exit code (see ``tui.cli.EXIT_CODES``)."""
    return cli.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
