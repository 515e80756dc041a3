"""``cardrenew``'s command line: one ``argparse`` parser, one function per subcommand.

The same options (``--config``, ``--reader``, ``-v``, ``--demo``) may stand before or after the
subcommand; after it they default to ``SUPPRESS`` so a value given before is never overwritten.
"""

from __future__ import annotations

import argparse
import datetime as dt

from tui.cli.exit_codes import EXIT_CODES

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

DEMO_FAULTS = ["none", "pull-card", "ca-refuses"]
THEMES = ["default", "high-contrast"]
CONFIG_HELP = "configuration file (default: $CARDRENEW_CONFIG, XDG, /etc)"
READER_HELP = "PC/SC reader (default: the one holding the only card)"
VERBOSE_HELP = "log to stderr (-vv: APDU trace, secrets redacted)"
JSON_HELP = "machine-readable output (stable; see README)"


class _Parents:
    """The option groups subcommands inherit (``parents=``): each defaults to ``SUPPRESS``."""

    def __init__(self) -> None:
        self.common = argparse.ArgumentParser(add_help=False)
        self.common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=CONFIG_HELP)
        self.common.add_argument("-v", "--verbose", action="count", default=0, dest="verbose_after",
                                 help=VERBOSE_HELP)
        self.reader = argparse.ArgumentParser(add_help=False)
        self.reader.add_argument("--reader", metavar="NAME", default=argparse.SUPPRESS, help=READER_HELP)
        self.demo = argparse.ArgumentParser(add_help=False)
        self.demo.add_argument("--demo", action="store_true", default=argparse.SUPPRESS,
                               help="the built-in virtual card and embedded CA (a fresh card each run, PIN 123456)")
        self.demo.add_argument("--demo-fault", choices=DEMO_FAULTS, default=argparse.SUPPRESS,
                               help="with --demo: show the error path")


def build_parser() -> argparse.ArgumentParser:
    """The whole ``cardrenew`` parser: the TUI's options, then each subcommand's."""
    parser = _top_parser()
    parents = _Parents()
    sub = parser.add_subparsers(dest="command")
    _add_status(sub, parents)
    _add_renew(sub, parents)
    _add_pin_commands(sub, parents)
    _add_queue(sub, parents)
    _add_audit(sub, parents)
    _add_serve(sub, parents)
    _add_ca(sub, parents)
    _add_emulator(sub, parents)
    return parser


def _top_parser() -> argparse.ArgumentParser:
    top_common = argparse.ArgumentParser(add_help=False)
    top_common.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    top_reader = argparse.ArgumentParser(add_help=False)
    top_reader.add_argument("--reader", metavar="NAME", help=READER_HELP)
    parser = argparse.ArgumentParser(prog="cardrenew", parents=[top_common, top_reader],
                                     description="Renew the certificates on a PIV smartcard.",
                                     epilog="Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
    parser.add_argument("--demo", action="store_true",
                        help="the built-in virtual card and embedded CA (the TUI, status and renew)")
    parser.add_argument("--demo-fault", choices=DEMO_FAULTS, default="none", help="with --demo: show the error path")
    parser.add_argument("--kiosk", action="store_true", default=None,
                        help="kiosk mode: no quit key, no command palette, back to the logon pane after log off")
    parser.add_argument("--theme", choices=THEMES, default=None,
                        help="the TUI's colours (default: ui.theme, else default); NO_COLOR is honoured too")
    parser.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSE_HELP)
    return parser


def _add_status(sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: _Parents) -> None:
    p = sub.add_parser("status", parents=[parents.common, parents.reader, parents.demo],
                       help="certificates, expiry, days left, due or not")
    p.add_argument("--json", action="store_true", help=JSON_HELP)


def _add_renew(sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: _Parents) -> None:
    p = sub.add_parser("renew", parents=[parents.common, parents.reader, parents.demo],
                       help="headless renewal with the same engine as the TUI")
    p.add_argument("--pin-stdin", action="store_true", help="read the PIN from the first line of standard input")
    p.add_argument("--allow-last-pin-try", action="store_true",
                   help="send the PIN even when only one try is left (a wrong PIN then blocks the card)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument("--check", action="store_true",
                   help="dry run: run every check a renewal makes first and change nothing on the card "
                        "(the PIN is optional; exit 0 if no check failed, 14 if one did)")


PIN_STDIN_HELP = ("read the secrets from standard input, one per line: the current PIN (unblock: the PUK), the "
                  "new PIN, the new PIN again")


def _add_pin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: _Parents) -> None:
    """``change-pin`` and ``unblock``: the TUI's Change passcode and Unlock card (tui/cli/pin.py)."""
    for name, text in (("change-pin", "change the card's PIN (current PIN, new PIN twice)"),
                       ("unblock", "set a new PIN with the PUK (support staff; needs ui.allow_unlock = true)")):
        p = sub.add_parser(name, parents=[parents.common, parents.reader, parents.demo], help=text, description=text)
        p.add_argument("--pin-stdin", action="store_true", help=PIN_STDIN_HELP)
        p.add_argument("--last-try", "--allow-last-pin-try", dest="last_try", action="store_true",
                       help="send even when only one try is left (a wrong entry then blocks it)")
        p.add_argument("--json", action="store_true", help=JSON_HELP)


QUEUE_HELP = """\
Renew the cards in every reader, several at once (one card worker per reader): each due card's
holder types their own PIN at the prompt, which names the holder and the reader; that PIN goes to
that card only, once, and is never kept. One line per card, then a summary (renewed / failed /
not due). Enter at a prompt skips that card. With one PIN try left the holder is asked first.

--watch keeps waiting for cards to arrive until Ctrl-C, SIGTERM or SIGHUP: the card steps under
way then finish, every reader is released and the summary printed.

Exit codes: 0 every card renewed or up to date; 13 some card was not renewed (failed, refused,
skipped); 2 --pin-stdin (refused) or no terminal; 3 no card in any reader (without --watch);
128 + signal when stopped by a signal without --watch.
"""


def _add_queue(sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: _Parents) -> None:
    p = sub.add_parser("queue", parents=[parents.common], help="renew the cards in every reader, each with its own PIN",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=QUEUE_HELP)
    p.add_argument("--watch", action="store_true", help="keep waiting for cards until Ctrl-C / SIGTERM")
    p.add_argument("--pin-stdin", action="store_true",
                   help="refused (exit 2): one PIN must never be sent to several cards; use renew --pin-stdin")


def _add_audit(sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: _Parents) -> None:
    p = sub.add_parser("audit", parents=[parents.common], help="print, export or verify the audit log",
                       description="Print the newest audit records (JSON lines), export them for the RA "
                                   "(--since, --outcome, --format), or check that the log is as it was written "
                                   "(--verify, exit 15 when it was edited or cut).")
    p.add_argument("-n", type=entry_count, default=None, metavar="N",
                   help="how many of the newest entries (default 20, or all with --since/--outcome/--format; "
                        "0 prints none)")
    p.add_argument("--since", type=since_time, metavar="DATE",
                   help="only records from DATE on (ISO 8601: 2026-12-01 or 2026-12-01T08:00; UTC unless an "
                        "offset is given)")
    p.add_argument("--outcome", metavar="OUTCOME",
                   help="only these records: failed (every failure: wrong PIN, blocked, refused, CA refusal, "
                        "aborted …), ok, or one outcome by name (renewed, wrong_pin, blocked, ca_refused …)")
    p.add_argument("--format", choices=("lines", "json", "csv"), default="lines",
                   help="lines: one JSON record per line (default); json: one JSON array; csv: a header row "
                        "and one row per record")
    p.add_argument("--verify", action="store_true",
                   help="check the chain of records and the head file: where was the log edited or cut")
    p.add_argument("--demo", action="store_true", default=argparse.SUPPRESS,
                   help="the audit log of the --demo runs (kept in the demo's own state directory)")


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: _Parents) -> None:
    p = sub.add_parser("serve", parents=[parents.common, parents.reader],
                       help="the TUI in a browser (kiosk), one session at a time",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=SERVE_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--public-url", metavar="URL",
                   help="the URL browsers use when an authenticating proxy stands in front; only its origin may connect")
    p.add_argument("--demo", action="store_true", default=argparse.SUPPRESS, help="serve the demo card")
    p.add_argument("--demo-fault", choices=DEMO_FAULTS, default=argparse.SUPPRESS,
                   help="with --demo: show the error path")
    p.add_argument("--kiosk", action="store_true", default=argparse.SUPPRESS, help="serve the TUI in kiosk mode")
    p.add_argument("--theme", choices=THEMES, default=argparse.SUPPRESS, help="the TUI's colours")


def _add_ca(sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: _Parents) -> None:
    ca = sub.add_parser("ca", parents=[parents.common], help="embedded certificate authority")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True)
    p = ca_sub.add_parser("init", parents=[parents.common], help="create DIR/ca.pem and DIR/ca.key (PKCS#8 PEM, 0600)")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--name", default="cardrenew Demo CA", help="the CA's common name")


def _add_emulator(sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: _Parents) -> None:
    emu = sub.add_parser("emulator", parents=[parents.common], help="the software PIV card")
    emu_sub = emu.add_subparsers(dest="emulator_command", required=True)
    _add_emulator_create(emu_sub, parents)
    _add_emulator_serve(emu_sub, parents)


def _add_emulator_create(sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: _Parents) -> None:
    p = sub.add_parser("create", parents=[parents.common], help="make a card whose 9A/9C certificates come from a CA")
    p.add_argument("state", metavar="STATE")
    p.add_argument("--ca", required=True, metavar="DIR", help="an embedded CA made by `cardrenew ca init`")
    p.add_argument("--expires-in-days", type=int, default=30, metavar="N")
    p.add_argument("--pin", default="123456")
    p.add_argument("--key-type", choices=["RSA2048", "ECCP256", "ECCP384"], default="RSA2048")
    p.add_argument("--profile", choices=["piv", "yubikey5", "yubikey54", "legacy"], default="piv",
                   help="piv: SP 800-73-4, 3DES; yubikey5: AES-192, F7/FD/F8, 3052-byte objects; "
                        "yubikey54: as yubikey5 with a 3DES key (firmware 5.4); "
                        "legacy: 1856-byte objects, 3DES and RSA-2048 only")
    p.add_argument("--management-key", metavar="HEX",
                   help="the 9B key in the profile's algorithm (default: the well-known key)")
    p.add_argument("--holder", default="Alex Example", help="the cardholder's name (certificate CN)")
    p.add_argument("--usage", choices=["piv", "client-auth"], default="piv",
                   help="certificate usages: piv (9A client auth, 9C signing + e-mail protection) or client-auth "
                        "(every slot: digitalSignature, clientAuth — the profile scepserver issues)")


def _add_emulator_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: _Parents) -> None:
    p = sub.add_parser("serve", parents=[parents.common], help="serve the card to pcscd through vpcd")
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


def since_time(text: str) -> dt.datetime:
    """``audit --since``: an ISO 8601 date or date and time; UTC unless it carries an offset.

    Raises:
        argparse.ArgumentTypeError: not such a date (argparse: exit 2).
    """
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (give e.g. 2026-12-01 or 2026-12-01T08:00)") from None
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)


def entry_count(text: str) -> int:
    """``audit -n``: a whole number, 0 or more.

    Raises:
        argparse.ArgumentTypeError: not a whole number, or negative (argparse: exit 2).
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 or more entries")
    return value
