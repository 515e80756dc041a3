"""``cardrenew`` entry point: the TUI (default), or a headless subcommand (DESIGN §7).

The headless subcommands live in :mod:`tui.cli` and never import Textual.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run cardrenew; returns the process exit code (see ``tui.cli.EXIT_CODES``)."""
    from tui import cli

    return cli.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
