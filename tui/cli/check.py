"""``cardrenew renew --check``: the dry run (issue 15). Every check a renewal makes before it changes
anything — PIN (optional), management key, CA reachable and pinned, the RA's grant in its dry mode,
certificate sizes, key algorithms, the card's own expiry, the state directory — each reported as
passed, failed or skipped with the next step; nothing on the card is changed (no GENERATE, no PUT
DATA). What an installer runs after configuring a reader host.

The PIN is optional: ``--pin-stdin`` reads it from the first line of standard input; on a terminal it
is asked (no echo; an empty answer skips the checks that need it); otherwise none is used. With one
PIN try left it is not sent unless ``--allow-last-pin-try`` is given or the terminal confirms.

Exit codes: 0 no check failed (skipped checks are listed); 14 at least one check failed; 3 no card
or reader; 2 usage or configuration; 128 + signal when stopped.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from card import backend as assembly  # called through the module: tests put an in-process card there
from card.backend import Backend
from card.enrollment.base import IssuerError
from card.errors import CardError, OperationCancelled
from card.secret import Secret
from card.service import CheckItem, CheckOutcome, CheckReport, CheckRequest
from card.words import sentence
from tui.cli.demo import cli_demo_backend
from tui.cli.exit_codes import EXIT_CHECK_FAILED, EXIT_OK
from tui.cli.failure import fail
from tui.cli.output import cli_next_step, out, print_notices, settings_for
from tui.cli.renew import _StopOnSignal
from tui.cli.renew_pin import pin_characters_only, read_pin

MARK = {CheckOutcome.PASSED: "passed ", CheckOutcome.FAILED: "FAILED ", CheckOutcome.SKIPPED: "skipped"}


def cmd_check(args: argparse.Namespace) -> int:
    """The dry run on the card of ``--reader`` (or ``--demo``); returns the exit code."""
    settings = settings_for(args)
    stop = _StopOnSignal()
    issuer_error: CardError | None = None
    try:
        if args.demo:
            backend = cli_demo_backend(args, settings)
        else:
            try:  # a CA that cannot be opened is a failed check, not the end of the dry run
                issuer = assembly.build_issuer(settings, cancel=stop.cancel)
            except IssuerError as exc:
                issuer, issuer_error = None, exc
            backend = assembly.card_backend(settings, args.reader, with_issuer=False, cancel=stop.cancel)
            backend.issuer = issuer  # type: ignore[assignment]  # None: the CA check reports issuer_error
    except BaseException:
        stop.restore()
        raise
    try:
        request = CheckRequest(_pin_for_check(args, backend, stop), refuse_last_try=not args.allow_last_pin_try,
                               issuer_error=issuer_error)
        report = stop.result(backend.check(request))
    except Exception as exc:  # noqa: BLE001 - mapped to documented exit codes
        if isinstance(exc, OperationCancelled) and stop.stopped_by:
            return fail(args, exc, code=128 + stop.stopped_by[0])
        return fail(args, exc)
    finally:
        stop.restore()
        backend.close(wait=not stop.gave_up)
        print_notices(backend)
    return show_report(args, report)


def _pin_for_check(args: argparse.Namespace, backend: Backend, stop: _StopOnSignal) -> Secret | None:
    """The PIN for the checks that need it, or None (they are skipped). With one try left on a
    terminal, asks before the PIN is typed; ``--pin-stdin`` never asks (``--allow-last-pin-try``).

    Raises:
        UsageError: ``--pin-stdin`` with nothing on standard input (exit 2; no try used).
    """
    if args.pin_stdin:
        return read_pin(args, backend.settings.pin_characters)
    if not sys.stdin.isatty():
        return None
    left = stop.result(backend.tries_left("PIN"))
    if left == 0:
        return None  # blocked: the PIN check says so; nothing to type
    if left == 1 and not args.allow_last_pin_try:
        answer = input("Only 1 PIN try is left: a wrong PIN would block the card. Check with the PIN? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return None
        args.allow_last_pin_try = True
    pin = Secret(getpass.getpass("PIN (Enter without a PIN skips the checks that need it): "))
    if not pin:
        pin.wipe()
        return None
    return pin_characters_only(pin, backend.settings.pin_characters)


def item_json(item: CheckItem) -> dict[str, object]:
    """One check as ``renew --check --json`` shows it (README, JSON output)."""
    return {"check": item.check, "slot": item.slot, "title": item.title, "outcome": item.outcome.value,
            "message": sentence(item.message), "next_step": cli_next_step(item.next_step) or None,
            "code": item.code}


def report_text(report: CheckReport) -> str:
    """The report as lines: one per check (its mark, title and message), its next step below it."""
    who = f"holder {report.holder}, " if report.holder else ""
    lines = [f"Dry run on the card in {report.reader} ({who}card {report.guid_text or report.card_id or 'unknown'}):"]
    for item in report.items:
        lines.append(f"  {MARK[item.outcome]}  {item.title}: {sentence(item.message)}")
        if item.next_step:
            lines.append(f"           Next step: {cli_next_step(item.next_step)}")
    summary = report.summary()
    lines.append(f"{summary.title}: {summary.message}")
    if summary.next_step:
        lines.append(f"Next step: {summary.next_step}")
    return "\n".join(lines)


def show_report(args: argparse.Namespace, report: CheckReport) -> int:
    """Print the report (text or ``--json``); returns 0 when no check failed, else 14."""
    code = EXIT_OK if report.ok else EXIT_CHECK_FAILED
    summary = report.summary()
    payload = {"outcome": "passed" if report.ok else "failed", "reader": report.reader,
               "card_guid": report.card_id, "holder": report.holder,
               "passed": report.count(CheckOutcome.PASSED), "failed": report.count(CheckOutcome.FAILED),
               "skipped": report.count(CheckOutcome.SKIPPED), "checks": [item_json(i) for i in report.items],
               "message": summary.message, "exit_code": code}
    out(args, payload, report_text(report))
    return code
