"""``cardrenew emulator create|serve``: the software PIV card, and serving it to pcscd through vpcd."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from card.config import UsageError
from card.emulator.card import CardFaults, SoftPivCard
from card.emulator.create import create_card_file
from card.emulator.vpcd import serve
from card.enrollment.local import LocalCA
from card.service import KeyType
from tui.cli.exit_codes import EXIT_OK


def cmd_emulator_create(args: argparse.Namespace) -> int:
    """Make a card file whose 9A/9C certificates come from an embedded CA.

    Raises:
        UsageError: a bad option value (exit 2).
    """
    try:
        mgmt = bytes.fromhex(args.management_key) if args.management_key else None
        state = create_card_file(Path(args.state), LocalCA(Path(args.ca)), expires_in_days=args.expires_in_days,
                                 pin=args.pin, key_type=KeyType[args.key_type], holder=args.holder,
                                 profile=args.profile, management_key=mgmt, usage=args.usage)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(f"Created virtual card {args.state} ({args.profile}, {args.key_type}, certificates in 9A and 9C expiring in "
          f"{args.expires_in_days} days, {len(state.objects)} objects).")
    return EXIT_OK


def cmd_emulator_serve(args: argparse.Namespace) -> int:
    """Serve the card file to vpcd until SIGTERM, SIGINT or SIGHUP.

    Raises:
        UsageError: a bad fault option (exit 2).
    """
    host, _, port = args.vpcd.rpartition(":")
    try:
        drop_at = {step: int(n) for step, _, n in (item.partition(":") for item in args.drop_at)}
        delays = {int(ins, 16): float(sec) for ins, _, sec in (item.partition("=") for item in args.delay)}
        faults = CardFaults(drop_after_apdus=args.drop_after_apdus, drop_at_put_data=args.drop_at_put_data,
                            drop_at=drop_at, delays_s=delays)
    except ValueError as exc:
        raise UsageError(f"bad fault option: {exc}") from exc
    card = SoftPivCard.from_file(Path(args.state), faults)
    card.name = f"vpcd {args.vpcd}"
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    print(f"Serving {args.state} to vpcd at {host}:{port} (Ctrl-C to stop).", flush=True)
    serve(card, host or "127.0.0.1", int(port), stop, reinsert_after_s=args.reinsert_after)
    return EXIT_OK
