"""``--demo`` for ``status`` and ``renew``: the demo backend (the TUI's is made lazily by
:mod:`tui.cli.interactive`; where ``--demo`` is allowed is checked by :mod:`tui.cli.entry`)."""

from __future__ import annotations

import argparse
import sys

from card.config import Settings
from card.demo import DEMO_PIN, demo_backend
from card.backend import Backend


def cli_demo_backend(args: argparse.Namespace, settings: Settings) -> Backend:
    """``--demo`` for ``status`` and ``renew``: the demo's virtual card and embedded CA, as in the TUI
    (a fresh card each run, certificates due in 30 days, PIN 123456; the card is not kept)."""
    backend, _ = demo_backend(settings, fault=args.demo_fault, reinsert_after_s=None)
    print(f"Demo: a fresh virtual card (PIN {DEMO_PIN}) and the embedded demo CA; "
          "the card is not kept after this run.", file=sys.stderr)  # stderr: --json output stays clean
    return backend
