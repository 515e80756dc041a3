"""The CLI's one error funnel: an exception becomes a documented exit code and the error's words
(title, message, next step, reference) on stderr, or as ``{"error": …}`` with ``--json``."""

from __future__ import annotations

import argparse
import json
import signal
import sys

from card.config import ConfigError, find_config
from card.enrollment.base import IssuerError
from card.errors import (
    CardError,
    CardRemovedError,
    InvalidPinError,
    LastPinTryError,
    ManagementKeyError,
    NoCardError,
    NotSupportedError,
    OperationCancelled,
    PinBlockedError,
    PinFormatError,
    ReaderUnavailableError,
    StateFileError,
)
from card.service import RenewalRefused
from card.terminal_text import terminal_safe
from tui.cli.exit_codes import EXIT_CA, EXIT_CARD, EXIT_ERROR, EXIT_PIN, EXIT_REFUSED, EXIT_USAGE
from tui.cli.output import JsonObject, cli_next_step, wants_json


def error_payload(exc: BaseException) -> dict[str, JsonObject]:
    """``{"error": {"code", "title", "message", "next_step", "reference"}}`` (README, JSON output)."""
    if isinstance(exc, CardError):
        return {"error": {"code": exc.code, "title": exc.title, "message": str(exc),
                          "next_step": cli_next_step(exc.next_step),
                          "reference": exc.reference}}
    return {"error": {"code": "INTERNAL", "title": "Unexpected error", "message": str(exc), "next_step": None}}


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of an error (:mod:`tui.cli.exit_codes`)."""
    if isinstance(exc, StateFileError):  # raised (not reported per slot): nothing was changed on the card
        return EXIT_REFUSED
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    if isinstance(exc, OperationCancelled):  # the CLI passes 128 + the signal when it knows it
        return 128 + signal.SIGINT
    if isinstance(exc, (InvalidPinError, PinBlockedError, PinFormatError, LastPinTryError)):
        return EXIT_PIN
    if isinstance(exc, (ReaderUnavailableError, NoCardError, CardRemovedError)):
        return EXIT_CARD
    if isinstance(exc, IssuerError):
        return EXIT_CA
    if isinstance(exc, (RenewalRefused, NotSupportedError, ManagementKeyError)):  # preflight: nothing changed (F-17)
        return EXIT_REFUSED
    return EXIT_ERROR


def fail(args: argparse.Namespace, exc: BaseException, code: int | None = None) -> int:
    """Print ``exc`` as the user is told it (stderr; stdout with ``--json``) and return its exit code
    (``code`` when the caller knows better, e.g. 128 + the signal that stopped a renewal)."""
    if isinstance(exc, ConfigError):  # every configuration error names the file (issue 12, point 9)
        try:
            exc = exc.naming(find_config(getattr(args, "config", None)))
        except ConfigError:
            pass
    code = exit_code_for(exc) if code is None else code
    payload = {**error_payload(exc), "exit_code": code}
    if wants_json(args):
        print(json.dumps(payload, indent=2, sort_keys=True))
    else:
        title = exc.title if isinstance(exc, CardError) else "Error"
        print(terminal_safe(f"cardrenew: {title}: {exc}", keep_newlines=True), file=sys.stderr)
        if isinstance(exc, CardError) and exc.next_step:
            print(terminal_safe(f"Next step: {cli_next_step(exc.next_step)}", keep_newlines=True), file=sys.stderr)
        if isinstance(exc, CardError) and exc.reference:
            print(terminal_safe(f"Reference: {exc.reference}"), file=sys.stderr)
    return code
