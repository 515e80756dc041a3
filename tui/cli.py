"""The command line (DESIGN §7): argument parsing and the headless subcommands.

Exit codes (stable, documented in the README):

====  =====================================================================
0     success (renewed; status: nothing due)
1     unexpected error
2     usage or configuration error
3     no reader, no card, card removed, or pcscd not running
4     wrong PIN (tries left shown) or PIN blocked
10    nothing to renew: every certificate is valid beyond the window (status: some are due)
11    refused: expired certificate, junk in a slot, or failed preflight — contact the RA; or a
      file cardrenew must write (state directory, journal, audit log) is not writable or the
      disk is full — nothing was changed (status: a certificate expired, a slot is unreadable,
      or the PIN is blocked)
12    the certificate authority refused or could not be reached; nothing was changed on the card
13    not every certificate was renewed, or a journal/audit file could not be written after the
      card changed; if the card was changed the journal is kept — run ``renew`` again to resume
====  =====================================================================
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from card.terminal_text import terminal_safe

if TYPE_CHECKING:
    from card.config import Settings
    from card.secret import Secret

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CARD = 3
EXIT_PIN = 4
EXIT_NOT_DUE = 10
EXIT_REFUSED = 11
EXIT_CA = 12
EXIT_PARTIAL = 13

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_ERROR: "unexpected error",
    EXIT_USAGE: "usage or configuration error",
    EXIT_CARD: "no reader, no card, card removed, or pcscd not running",
    EXIT_PIN: "wrong PIN or PIN blocked",
    EXIT_NOT_DUE: "nothing due for renewal (status: some certificates are due)",
    EXIT_REFUSED: "refused: expired certificate or failed preflight (contact the RA), or an unwritable state directory",
    EXIT_CA: "certificate authority refused or unreachable; card unchanged",
    EXIT_PARTIAL: "not every certificate was renewed; run renew again (it resumes) or contact the RA",
}


SERVE_HELP = """\
Serve the cardrenew TUI to a browser (a kiosk or thin client): the page at http://HOST:PORT/ starts
one `cardrenew` for the browser that opens it, on this host's card reader.

Protects against: other web pages in the kiosk browser driving the card (a websocket whose Origin
is not this page's own is refused with 403, as is a Host that is not ours: DNS rebinding); a second
browser taking over or blocking the reader (one live session; others get 409 "in use"); the page
being framed by another site (clickjacking); a shell in between (the app is started directly).

Does NOT protect against: anyone who can reach the port. There is no authentication. Keep it on
loopback (the default: the kiosk browser on the same host) or behind a reverse proxy that
authenticates, and give that proxy's URL as --public-url. Local users of the host can connect too.
"""


def build_parser() -> argparse.ArgumentParser:
    # The same options may stand before or after the subcommand. Subcommands default them to
    # SUPPRESS so that a value given before the subcommand is never overwritten by None.
    top_common = argparse.ArgumentParser(add_help=False)
    top_common.add_argument("--config", metavar="PATH", help="configuration file (default: $CARDRENEW_CONFIG, XDG, /etc)")
    top_reader = argparse.ArgumentParser(add_help=False)
    top_reader.add_argument("--reader", metavar="NAME", help="PC/SC reader (default: the one holding the only card)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="configuration file (default: $CARDRENEW_CONFIG, XDG, /etc)")
    common.add_argument("-v", "--verbose", action="count", default=0, dest="verbose_after",
                        help="log to stderr (-vv: APDU trace, secrets redacted)")
    reader = argparse.ArgumentParser(add_help=False)
    reader.add_argument("--reader", metavar="NAME", default=argparse.SUPPRESS,
                        help="PC/SC reader (default: the one holding the only card)")
    demo = argparse.ArgumentParser(add_help=False)
    demo.add_argument("--demo", action="store_true", default=argparse.SUPPRESS,
                      help="the built-in virtual card and embedded CA (a fresh card each run, PIN 123456)")
    demo.add_argument("--demo-fault", choices=["none", "pull-card", "ca-refuses"], default=argparse.SUPPRESS,
                      help="with --demo: show the error path")

    parser = argparse.ArgumentParser(prog="cardrenew", parents=[top_common, top_reader],
                                     description="Renew the certificates on a PIV smartcard.",
                                     epilog="Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
    parser.add_argument("--demo", action="store_true",
                        help="the built-in virtual card and embedded CA (the TUI, status and renew)")
    parser.add_argument("--demo-fault", choices=["none", "pull-card", "ca-refuses"], default="none",
                        help="with --demo: show the error path")
    parser.add_argument("--kiosk", action="store_true", default=None,
                        help="kiosk mode: no quit key, no command palette, back to the logon pane after log off")
    parser.add_argument("--theme", choices=["default", "high-contrast"], default=None,
                        help="the TUI's colours (default: ui.theme, else default); NO_COLOR is honoured too")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-vv: APDU trace, secrets redacted)")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("status", parents=[common, reader, demo], help="certificates, expiry, days left, due or not")
    p.add_argument("--json", action="store_true", help="machine-readable output (stable; see README)")

    p = sub.add_parser("renew", parents=[common, reader, demo], help="headless renewal with the same engine as the TUI")
    p.add_argument("--pin-stdin", action="store_true", help="read the PIN from the first line of standard input")
    p.add_argument("--allow-last-pin-try", action="store_true",
                   help="send the PIN even when only one try is left (a wrong PIN then blocks the card)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="machine-readable output (stable; see README)")

    p = sub.add_parser("audit", parents=[common], help="print the recent audit log entries")
    p.add_argument("-n", type=_entry_count, default=20, metavar="N",
                   help="how many of the newest entries (default 20; 0 prints none)")
    p.add_argument("--demo", action="store_true", default=argparse.SUPPRESS,
                   help="the audit log of the --demo runs (kept in the demo's own state directory)")

    p = sub.add_parser("serve", parents=[common, reader], help="the TUI in a browser (kiosk), one session at a time",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=SERVE_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--public-url", metavar="URL",
                   help="the URL browsers use when an authenticating proxy stands in front; only its origin may connect")
    p.add_argument("--demo", action="store_true", default=argparse.SUPPRESS, help="serve the demo card")
    p.add_argument("--demo-fault", choices=["none", "pull-card", "ca-refuses"], default=argparse.SUPPRESS,
                   help="with --demo: show the error path")
    p.add_argument("--kiosk", action="store_true", default=argparse.SUPPRESS, help="serve the TUI in kiosk mode")
    p.add_argument("--theme", choices=["default", "high-contrast"], default=argparse.SUPPRESS, help="the TUI's colours")

    ca = sub.add_parser("ca", parents=[common], help="embedded certificate authority")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True)
    p = ca_sub.add_parser("init", parents=[common], help="create DIR/ca.pem and DIR/ca.key (PKCS#8 PEM, 0600)")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--name", default="cardrenew Demo CA", help="the CA's common name")

    emu = sub.add_parser("emulator", parents=[common], help="the software PIV card")
    emu_sub = emu.add_subparsers(dest="emulator_command", required=True)
    p = emu_sub.add_parser("create", parents=[common], help="make a card whose 9A/9C certificates come from a CA")
    p.add_argument("state", metavar="STATE")
    p.add_argument("--ca", required=True, metavar="DIR", help="an embedded CA made by `cardrenew ca init`")
    p.add_argument("--expires-in-days", type=int, default=30, metavar="N")
    p.add_argument("--pin", default="123456")
    p.add_argument("--key-type", choices=["RSA2048", "ECCP256", "ECCP384"], default="RSA2048")
    p.add_argument("--profile", choices=["piv", "yubikey5", "legacy"], default="piv",
                   help="piv: SP 800-73-4, 3DES; yubikey5: AES-192, F7/FD/F8, 3052-byte objects; "
                        "legacy: 1856-byte objects, 3DES and RSA-2048 only")
    p.add_argument("--management-key", metavar="HEX",
                   help="the 9B key in the profile's algorithm (default: the well-known key)")
    p.add_argument("--holder", default="Alex Example", help="the cardholder's name (certificate CN)")
    p.add_argument("--usage", choices=["piv", "client-auth"], default="piv",
                   help="certificate usages: piv (9A client auth, 9C signing + e-mail protection) or client-auth "
                        "(every slot: digitalSignature, clientAuth — the profile scepserver issues)")
    p = emu_sub.add_parser("serve", parents=[common], help="serve the card to pcscd through vpcd")
    p.add_argument("state", metavar="STATE")
    p.add_argument("--vpcd", default="127.0.0.1:35963", metavar="HOST:PORT",
                   help="vpcd address (35963 = 'Virtual PCD 00 00', 35964 = '00 01')")
    p.add_argument("--drop-after-apdus", type=int, metavar="N", help="fault: the card is pulled after N commands")
    p.add_argument("--drop-at-put-data", type=int, metavar="N",
                   help="fault: the card is pulled when the N-th PUT DATA arrives (2 = the second certificate)")
    p.add_argument("--drop-at", action="append", default=[], metavar="STEP:N",
                   help="fault: pull the card at the N-th command of STEP (select, verify, mgmt-auth, generate, "
                        "sign, put-data, get-data); repeatable")
    p.add_argument("--delay", action="append", default=[], metavar="INS=SECONDS",
                   help="answer instruction INS (hex, e.g. 47 for GENERATE) after SECONDS; repeatable")
    p.add_argument("--reinsert-after", type=float, metavar="SECONDS", help="after a pull, re-insert after this long")
    return parser


def _entry_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 or more entries")
    return value


def _out(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, sort_keys=True))
    else:
        print(terminal_safe(text, keep_newlines=True))  # outside text (names, reasons) is never a terminal command


def _cli_next_step(next_step: str | None) -> str | None:
    """A card-layer next step in the CLI's words: the TUI's "from the Card tab" becomes the command."""
    if not next_step:
        return next_step
    return next_step.replace("from the Card tab", "with `cardrenew renew`")


def _error_payload(exc: BaseException) -> dict[str, Any]:
    from card.errors import CardError

    if isinstance(exc, CardError):
        return {"error": {"code": exc.code, "title": exc.title, "message": str(exc),
                          "next_step": _cli_next_step(exc.next_step),
                          "reference": exc.reference}}
    return {"error": {"code": "INTERNAL", "title": "Unexpected error", "message": str(exc), "next_step": None}}


def _exit_code_for(exc: BaseException) -> int:
    from card.config import ConfigError
    from card.enrollment.base import IssuerError
    from card.errors import (
        InvalidPinError,
        LastPinTryError,
        NoCardError,
        NotSupportedError,
        PinBlockedError,
        PinFormatError,
        ReaderUnavailableError,
    )
    from card.errors import CardRemovedError, StateFileError
    from card.renewal import RenewalRefused

    from card.errors import OperationCancelled

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
    if isinstance(exc, (RenewalRefused, NotSupportedError)):
        return EXIT_REFUSED
    return EXIT_ERROR


def _fail(args: argparse.Namespace, exc: BaseException, code: int | None = None) -> int:
    from card.config import ConfigError, find_config
    from card.errors import CardError

    if isinstance(exc, ConfigError):  # every configuration error names the file (issue 12, point 9)
        try:
            exc = exc.naming(find_config(getattr(args, "config", None)))
        except ConfigError:
            pass
    code = _exit_code_for(exc) if code is None else code
    payload = _error_payload(exc) | {"exit_code": code}
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, sort_keys=True))
    else:
        title = exc.title if isinstance(exc, CardError) else "Error"
        print(terminal_safe(f"cardrenew: {title}: {exc}", keep_newlines=True), file=sys.stderr)
        if isinstance(exc, CardError) and exc.next_step:
            print(terminal_safe(f"Next step: {_cli_next_step(exc.next_step)}", keep_newlines=True), file=sys.stderr)
        if isinstance(exc, CardError) and exc.reference:
            print(terminal_safe(f"Reference: {exc.reference}"), file=sys.stderr)
    return code


def _print_notices(backend: Any) -> None:
    """Say in words what happened to files on the way (a journal set aside), on stderr."""
    journals = getattr(backend, "journals", None)
    for notice in journals.take_notices() if journals is not None else []:
        print(terminal_safe(f"cardrenew: note: {notice}", keep_newlines=True), file=sys.stderr)


def _settings(args: argparse.Namespace) -> Any:
    from card.config import load_settings

    return load_settings(args.config, reader=getattr(args, "reader", None))


# -- status ---------------------------------------------------------------------------------
def summary_json(summary: Any, window_days: int) -> dict[str, Any]:
    from card.certificates import fingerprint
    from card.renewal import update_check

    nxt = summary.next_renewal_date(window_days)
    return {
        "reader": summary.reader,
        "card_guid": summary.guid_text,
        "card_expiry": summary.card_expiry.isoformat() if summary.card_expiry else None,
        "holder": summary.holder,
        "pin_retries": summary.pin_retries,
        "window_days": window_days,
        "update": update_check(summary).name.lower(),
        "next_renewal_date": nxt.isoformat() if nxt else None,
        "pending_reference": summary.pending_journal.reference if summary.pending_journal else None,
        "slots": [
            {
                "slot": s.slot.hex,
                "label": s.setting.label,
                "state": s.state.name.lower(),
                "subject": s.certificate.subject.rfc4514_string() if s.certificate else None,
                "issuer": s.certificate.issuer.rfc4514_string() if s.certificate else None,
                "serial": f"{s.certificate.serial_number:X}" if s.certificate else None,
                "not_after": s.certificate.not_valid_after_utc.isoformat() if s.certificate else None,
                "days_left": s.days_left,
                "sha256": fingerprint(s.certificate) if s.certificate else None,
                "error": s.error,
                "note": s.note,
            }
            for s in summary.slots
        ],
    }


def _demo_backend(args: argparse.Namespace, settings: Settings) -> Any:
    """``--demo`` for ``status`` and ``renew``: the demo's virtual card and embedded CA, as in the TUI
    (a fresh card each run, certificates due in 30 days, PIN 123456; the card is not kept)."""
    from card.demo import DEMO_PIN, demo_backend

    backend, _ = demo_backend(settings, fault=args.demo_fault, reinsert_after_s=None)
    print(f"Demo: a fresh virtual card (PIN {DEMO_PIN}) and the embedded demo CA; "
          "the card is not kept after this run.", file=sys.stderr)  # stderr: --json output stays clean
    return backend


def cmd_status(args: argparse.Namespace) -> int:
    import datetime as dt

    from card.renewal import SlotState, card_expiry_words, read_card
    from card.backend import pcsc_backend

    settings = _settings(args)
    if args.demo:
        backend = _demo_backend(args, settings)
        settings = backend.settings
    else:
        backend = pcsc_backend(settings, args.reader, with_issuer=False)
    try:
        summary = backend.service.submit(
            lambda s: read_card(s, settings, journals=backend.journals, reader=backend.reader_name)).result()
    finally:
        backend.service.shutdown()
        _print_notices(backend)
    payload = summary_json(summary, settings.window_days)
    code = EXIT_OK
    card_words = card_expiry_words(summary.card_expiry, settings.window_days, dt.datetime.now(dt.timezone.utc),
                                   settings.ra_contact)
    if (any(s.state in (SlotState.EXPIRED, SlotState.UNREADABLE) for s in summary.slots) or summary.pin_retries == 0
            or card_words is not None):  # the card itself expired or expires within the window: renew refuses
        code = EXIT_REFUSED
    elif any(s.state is SlotState.DUE for s in summary.slots):
        code = EXIT_NOT_DUE
    payload["exit_code"] = code
    lines = [f"Reader:  {summary.reader}", f"Card:    {summary.guid_text or 'no CHUID'}"
             + (f", expires {summary.card_expiry.isoformat()}" if summary.card_expiry else ""),
             f"Holder:  {summary.holder or 'unknown'}",
             "PIN:     " + ("verified" if summary.pin_retries is None else
                              f"BLOCKED — contact {settings.ra_contact}" if summary.pin_retries == 0 else
                              f"{summary.pin_retries} tries left")]
    for s in summary.slots:
        if s.certificate is not None:
            lines.append(f"  {s.setting.label} ({s.slot.hex}): {s.state.value}, expires "
                         f"{s.certificate.not_valid_after_utc.date().isoformat()} ({s.days_left} days left)"
                         + (f" — note: {s.note}" if s.note else ""))
        else:
            lines.append(f"  {s.setting.label} ({s.slot.hex}): {s.state.value}" + (f" — {s.error}" if s.error else ""))
    if card_words is not None:
        lines.append(card_words)
    if summary.pending_journal:
        lines.append(f"An unfinished update (reference {summary.pending_journal.reference}) will be resumed by `cardrenew renew`.")
    _out(args, payload, "\n".join(lines))
    return code


# -- renew ----------------------------------------------------------------------------------
class _PrintReporter:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def step(self, slot: Any, step: Any, detail: str = "") -> None:
        if not self.quiet:
            where = f"[{slot.hex}] " if slot is not None else ""
            print(terminal_safe(f"  {where}{step.value}" + (f": {detail}" if detail else ""), keep_newlines=True),
                  file=sys.stderr)

    def slot_finished(self, slot: Any, result: Any) -> None:
        pass


def _read_pin(args: argparse.Namespace) -> Secret:
    """The PIN from the first line of stdin (``--pin-stdin``) or the terminal, as a Secret; the
    caller's renewal wipes it. Raises UsageError when there is none (no try used)."""
    from card.config import UsageError
    from card.secret import Secret, read_secret_line

    if args.pin_stdin:
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):  # stdin replaced by a text object (in-process callers)
            pin = Secret(sys.stdin.readline().rstrip("\r\n"))
        else:
            pin = read_secret_line(fd)  # byte by byte: no buffer or string keeps a copy
        if not pin:
            raise UsageError("--pin-stdin: no PIN on standard input",
                             next_step="Give the PIN as the first line of standard input. No try was used.")
        return pin
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the PIN", next_step="Run with --pin-stdin and give the PIN on standard input.")
    return Secret(getpass.getpass("PIN: "))


def _guard_last_pin_try(session: Any, allowed: bool) -> None:
    """Before the engine sends the PIN, in the same card transaction: refuse when one try is left
    and spending it was not allowed. The count comes from an empty VERIFY (no try spent, SP 800-73-4
    Part 2 §3.2.1); a blocked PIN is reported without sending it.

    Raises:
        LastPinTryError: one try left, not allowed; PinBlockedError: no try left.
    """
    from card.errors import LastPinTryError, PinBlockedError

    if allowed:
        return
    retries = session.get_pin_retries()  # raises PinBlockedError on 69 83
    if retries == 0:
        raise PinBlockedError("The PIN is blocked.")
    if retries == 1:
        raise LastPinTryError("only 1 PIN try is left; a wrong PIN would block the card; run again with "
                              "--allow-last-pin-try or use the TUI")


def _warn_default_management_key(settings: Settings, args: argparse.Namespace) -> None:
    if settings.uses_default_management_key and not args.json:
        print("Warning: using the well-known default management key (allowed by the configuration).", file=sys.stderr)


def cmd_renew(args: argparse.Namespace) -> int:
    from card.renewal import RenewalContext, UpdateCheck, read_card, renew, update_check
    from card.backend import pcsc_backend

    settings = _settings(args)
    cancel = threading.Event()
    stopped_by: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}

    def on_signal(signum: int, frame: Any) -> None:  # finish the current card step, then stop
        if not cancel.is_set():
            print("Stopping after the current card step; the journal keeps what was done.", file=sys.stderr)
            stopped_by.append(signum)
        cancel.set()  # also ends any wait at once: the CA's reply, the RA hook, a back-off, a poll

    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        if args.demo:
            backend = _demo_backend(args, settings)
            settings = backend.settings
        else:
            backend = pcsc_backend(settings, args.reader, cancel=cancel)
    except BaseException:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise
    allow_last_try = args.allow_last_pin_try
    ctx = RenewalContext(settings, backend.issuer, backend.journals, backend.audit,
                         reporter=_PrintReporter(args.json), cancel=cancel)
    unattended = args.yes and args.pin_stdin
    try:
        if unattended:
            # Nothing is asked between the update check and the renewal, so both run in one card
            # transaction and the engine renews from the check's reading instead of reading the
            # card again (the PIN is read from stdin in between, as before: after the check).
            def check_then_renew(session: Any) -> tuple[Any, Any]:
                summary = read_card(session, settings, journals=backend.journals, reader=backend.reader_name,
                                    pin_retries=False)  # not shown; the engine sends the PIN next
                if update_check(summary) not in (UpdateCheck.AVAILABLE, UpdateCheck.RESUME):
                    return summary, None
                _guard_last_pin_try(session, allow_last_try)  # before the PIN is even read
                pin = _read_pin(args)
                _warn_default_management_key(settings, args)
                return summary, renew(session, ctx, pin, summary=summary)

            summary, result = backend.service.submit(check_then_renew).result()
        else:
            summary = backend.service.submit(
                lambda s: read_card(s, settings, journals=backend.journals, reader=backend.reader_name)).result()
            result = None
        check = update_check(summary)
        if check is UpdateCheck.UP_TO_DATE or check is UpdateCheck.NOTHING_TO_RENEW:
            nxt = summary.next_renewal_date(settings.window_days)
            msg = "Your card is up to date." + (f" Next renewal from {nxt.isoformat()}." if nxt else "")
            _out(args, {"outcome": "up_to_date", "message": msg, "next_renewal_date": nxt.isoformat() if nxt else None,
                        "slots": [], "reference": None, "exit_code": EXIT_NOT_DUE}, msg)
            return EXIT_NOT_DUE
        if check is UpdateCheck.EXPIRED:
            from card.renewal import RenewalRefused

            names = ", ".join(f"{s.setting.label} ({s.slot.hex})" for s in summary.expired)
            raise RenewalRefused(f"the certificate {names} has expired; self-service renewal is not allowed",
                                 next_step=f"Contact {settings.ra_contact}.")
        if result is not None:
            return _report_renewal(args, result)
        if summary.pin_retries == 1 and not allow_last_try and not args.pin_stdin and sys.stdin.isatty():
            answer = input("Only 1 PIN try is left: a wrong PIN would block the card. Send the PIN? [y/N] ")
            allow_last_try = answer.strip().lower() in ("y", "yes")
        pin = _read_pin(args)
        if not args.yes:
            what = ("resume the unfinished update " + summary.pending_journal.reference) if summary.pending_journal \
                else "renew " + ", ".join(f"{s.setting.label} ({s.slot.hex})" for s in summary.due)
            if not sys.stdin.isatty():
                from card.config import UsageError

                raise UsageError("confirmation needed", next_step="Run with --yes to renew without asking.")
            answer = input(f"About to {what}. Do not remove your card. Continue? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                pin.wipe()
                print("Cancelled; nothing was changed.")
                return EXIT_OK
        _warn_default_management_key(settings, args)

        def guard_then_renew(session: Any) -> Any:
            try:
                _guard_last_pin_try(session, allow_last_try)  # in the renewal's own card transaction
                return renew(session, ctx, pin)
            finally:
                pin.wipe()  # (renew wipes it too; the guard may refuse before)

        result = backend.service.submit(guard_then_renew).result()
    except Exception as exc:  # noqa: BLE001 - mapped to documented exit codes
        from card.errors import OperationCancelled

        if isinstance(exc, OperationCancelled) and stopped_by:
            return _fail(args, exc, code=128 + stopped_by[0])
        return _fail(args, exc)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        backend.service.shutdown()
        _print_notices(backend)
    return _report_renewal(args, result)


def _report_renewal(args: argparse.Namespace, result: Any) -> int:
    from card.errors import CardRemovedError, CardResetByOtherError, StateFileError

    slots = []
    for r in result.slots:
        slots.append({
            "slot": r.slot.hex,
            "label": r.label,
            "renewed": r.renewed,
            "old_serial": f"{r.old_certificate.serial_number:X}" if r.old_certificate else None,
            "new_serial": f"{r.new_certificate.serial_number:X}" if r.new_certificate else None,
            "new_not_after": r.new_certificate.not_valid_after_utc.isoformat() if r.new_certificate else None,
            "error": str(r.error) if r.error else None,
            "left_alone": r in result.left_alone,
        })
    if result.ok:
        code, outcome = EXIT_OK, "renewed"
        message = "Your certificates have been renewed. Log off, remove your card, and log back on to test it."
        next_step = None
    elif result.ours_renewed:  # the rest was changed by someone else (the RA): theirs, valid, left alone
        code, outcome = EXIT_OK, "renewed"
        message = ("Your certificates have been renewed; "
                   + ", ".join(f"{r.label} ({r.slot.hex})" for r in result.left_alone)
                   + " had been changed by someone else and was left alone. Log off, remove your card, and log "
                   "back on to test it.")
        next_step = result.left_alone[0].error.next_step
    else:
        code, outcome = EXIT_PARTIAL, "completed_with_errors"
        message = "The operation was completed with errors."
        err = result.error
        if isinstance(err, CardResetByOtherError):
            next_step = err.next_step
        elif isinstance(err, CardRemovedError):
            next_step = "Re-insert your card and run `cardrenew renew` again: the update resumes where it stopped."
        elif isinstance(err, StateFileError):
            message = f"The operation was completed with errors: {err}."
            next_step = err.next_step
        elif not result.journal_kept:  # nothing to resume: never send the user round in a loop (issue 11)
            first = err or next((r.error for r in result.slots if r.error is not None), None)
            next_step = (first.next_step if first is not None and first.next_step else
                         f"Contact your Registration Authority with reference {result.reference}.")
        else:
            next_step = (f"Run `cardrenew renew` again. If the error persists, contact your Registration Authority "
                         f"with reference {result.reference}.")
    next_step = _cli_next_step(next_step)
    payload = {"outcome": outcome, "reference": result.reference, "slots": slots, "message": message,
               "next_step": next_step, "journal_kept": result.journal_kept, "exit_code": code}
    lines = [message]
    for s in slots:
        if s["renewed"]:
            lines.append(f"  {s['label']} ({s['slot']}): renewed, new expiry {s['new_not_after'][:10]}")
        else:
            lines.append(f"  {s['label']} ({s['slot']}): "
                         + ("left alone" if s["left_alone"] else "NOT renewed") + f" — {s['error']}")
    lines.append(f"Reference: {result.reference}")
    if next_step:
        lines.append(f"Next step: {next_step}")
    _out(args, payload, "\n".join(lines))
    return code


# -- serve ----------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    """``cardrenew serve``: the browser kiosk (see ``SERVE_HELP`` and :mod:`tui.serve`)."""
    from tui.serve import serve

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
    if not 0 < args.port < 65536:
        from card.config import UsageError

        raise UsageError(f"--port {args.port}: not a TCP port")
    if not args.demo:
        from card.backend import build_issuer

        # The configuration errors the TUI would give each browser session (which then just dies,
        # its message only in the server's terminal), given once here, before anything is served.
        build_issuer(_settings(args))
    return serve(app_args, host=args.host, port=args.port, public_url=args.public_url)


# -- the rest -------------------------------------------------------------------------------
def cmd_audit(args: argparse.Namespace) -> int:
    """Print the newest ``-n`` audit records as JSON lines (stdout); what is not a record (a torn or
    foreign line) is skipped with a warning, and an absent or empty log is said in words (stderr)."""
    from card.journal import AuditLog, JournalStore, flush_kept_audit

    if getattr(args, "demo", False):
        from card.demo import demo_state_dir

        state_dir = demo_state_dir()
    else:
        state_dir = _settings(args).state_dir
    log = AuditLog(state_dir / "audit.log")
    kept = flush_kept_audit(JournalStore(state_dir), log)  # records an earlier run could not write
    if kept is not None:
        print(terminal_safe(f"cardrenew: warning: {kept}", keep_newlines=True), file=sys.stderr)
    reading = log.read(args.n)
    for number, why in reading.skipped:
        where = f"line {number}" if number is not None else "a line"
        print(terminal_safe(f"cardrenew: warning: {where} of {log.path} is not an audit record ({why}); skipped"),
              file=sys.stderr)
    for entry in reading.entries:
        print(json.dumps(entry, sort_keys=True))
    if not reading.exists:
        print(f"No audit log at {log.path} yet: no renewal has been recorded there.", file=sys.stderr)
    elif not reading.entries and args.n != 0:
        print(f"The audit log {log.path} holds no records" + (" (only lines that are not records)."
                                                              if reading.skipped else " (it is empty)."),
              file=sys.stderr)
    return EXIT_OK


def cmd_ca_init(args: argparse.Namespace) -> int:
    from card.certificates import fingerprint
    from card.enrollment.local import init_ca

    try:
        cert = init_ca(Path(args.directory), args.name)
    except FileExistsError as exc:
        print(terminal_safe(f"cardrenew: {exc}; not overwritten"), file=sys.stderr)
        return EXIT_USAGE
    print(f"Created {Path(args.directory) / 'ca.pem'} and ca.key (0600).")
    print(f"CA certificate SHA-256: {fingerprint(cert)}")
    return EXIT_OK


def cmd_emulator_create(args: argparse.Namespace) -> int:
    from card.emulator.create import create_card_file
    from card.enrollment.local import LocalCA
    from card.piv import KeyType

    from card.config import UsageError

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
    from card.emulator.card import CardFaults, SoftPivCard
    from card.emulator.vpcd import serve

    host, _, port = args.vpcd.rpartition(":")
    from card.config import UsageError

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


def cmd_tui(args: argparse.Namespace) -> int:
    import os

    from card.config import load_settings
    from tui.driver import driver_class, terminal_problem

    if (problem := terminal_problem(sys.stdin, os.environ)) is not None:
        print(terminal_safe(f"cardrenew: {problem}", keep_newlines=True), file=sys.stderr)
        return EXIT_USAGE  # nothing was started, nothing spins
    settings = load_settings(args.config, reader=args.reader, kiosk=args.kiosk, theme=args.theme)
    if args.demo:
        from card.demo import lazy_demo_backend

        backend = lazy_demo_backend(settings, fault=args.demo_fault)  # the card is made after the first frame
    else:
        from card.backend import pcsc_backend

        backend = pcsc_backend(settings, args.reader, wait_for_card=True,  # no card yet: the logon pane asks for it
                               cancel=(stop := threading.Event()))
    from tui.app import make_app, run_app

    app = make_app(backend)
    app.driver_class = driver_class() or app.driver_class  # undecodable input never ends the app
    # SIGTERM, SIGHUP (an SSH session dropped) and SIGINT: the UI ends at once, the current card
    # step finishes (journalled), waits for the CA or another program's hold end (``stop``); 128 + signal.
    # A crash (also Textual's panic path, which leaves no return code) exits 1, never 0.
    return run_app(app, cancel=None if args.demo else stop)


class _OncePerRun(logging.Filter):
    """Lets each distinct warning through once per run (a full disk made the same journal
    warning appear once per save: six times), its message made terminal-safe (a reader name or a
    CA's reason is outside text: :func:`card.terminal_text.terminal_safe`)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = terminal_safe(record.getMessage(), keep_newlines=True)
        if record.args or message != record.msg:
            record.msg, record.args = message, None
        if record.levelno < logging.WARNING:
            return True
        key = (record.levelno, message)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def main(argv: list[str]) -> int:
    once = _OncePerRun()
    handlers = [logging.lastResort, *logging.getLogger().handlers]
    for handler in handlers:
        if handler is not None:
            handler.addFilter(once)
    try:
        return _main(argv, once)
    finally:
        for handler in [logging.lastResort, *logging.getLogger().handlers]:
            if handler is not None:
                handler.removeFilter(once)


def _main(argv: list[str], once: logging.Filter) -> int:
    from card.secret import harden_process

    harden_process()  # before any secret is read: no core dump, no ptrace by others (issue 12)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.verbose += getattr(args, "verbose_after", 0)  # -v before and after the subcommand add up
    if args.verbose:
        from card.apdu import TRAFFIC

        logging.basicConfig(level=TRAFFIC if args.verbose > 1 else logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        for handler in logging.getLogger().handlers:
            handler.addFilter(once)
    handlers = {
        "status": cmd_status,
        "renew": cmd_renew,
        "audit": cmd_audit,
        "serve": cmd_serve,
    }
    try:
        if getattr(args, "demo", False) and (args.reader or args.command not in (None, "status", "renew", "audit", "serve")):
            from card.config import UsageError

            raise UsageError("--demo uses the built-in virtual card: it goes with the TUI, status, renew, serve and "
                             "audit, and not with --reader", next_step="Leave out --demo, or --reader.")
        if args.command in handlers:
            return handlers[args.command](args)
        if args.command == "ca":
            return cmd_ca_init(args)
        if args.command == "emulator":
            return cmd_emulator_create(args) if args.emulator_command == "create" else cmd_emulator_serve(args)
        return cmd_tui(args)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one funnel to exit codes
        return _fail(args, exc)


