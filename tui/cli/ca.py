"""``cardrenew ca init DIR``: make an embedded certificate authority (DIR/ca.pem, DIR/ca.key)."""

from __future__ import annotations

import argparse
from pathlib import Path

from card.certificates import fingerprint
from card.enrollment.local import init_ca
from tui.cli.exit_codes import EXIT_OK, EXIT_USAGE
from tui.cli.output import warn


def cmd_ca_init(args: argparse.Namespace) -> int:
    """Create the CA; an existing one is never overwritten (exit 2)."""
    try:
        cert = init_ca(Path(args.directory), args.name)
    except FileExistsError as exc:
        warn(f"cardrenew: {exc}; not overwritten")
        return EXIT_USAGE
    print(f"Created {Path(args.directory) / 'ca.pem'} and ca.key (0600).")
    print(f"CA certificate SHA-256: {fingerprint(cert)}")
    return EXIT_OK
