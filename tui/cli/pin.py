"""``cardrenew change-pin`` and ``cardrenew unblock``: the TUI's *Change passcode* and *Unlock card*
on the command line (issue 15), through the same door operations (``change_pin`` / ``unblock_pin``:
CHANGE REFERENCE DATA / RESET RETRY COUNTER, audited by the door as ``change_pin`` / ``unlock_card``).

Secrets: asked on the terminal without echo, or with ``--pin-stdin`` read from standard input, one
per line, in this order — the current PIN (``unblock``: the PUK), the new PIN, the new PIN again.
They are never printed, logged or kept; a mismatch or a PIN that is not 6–8 characters is refused
before anything is sent (no try used).

The same guards as the TUI: ``unblock`` only where ``ui.allow_unlock`` is true (otherwise refused,
exit 11, nothing sent); with one try left (of the PIN, or of the PUK where the card says) nothing is
sent unless ``--last-try`` is given or the terminal confirms (exit 4 ``PIN-LAST-TRY`` otherwise); a blocked PIN (``change-pin``) or PUK
(``unblock``) is refused before a secret is asked (exit 4 ``BLOCKED``). Each refusal is audited
(``outcome: refused`` with its ``error_code``); what the card answered is audited by the door
(``changed``, ``wrong_pin`` / ``wrong_puk``, ``blocked``).

Exit codes: 0 changed; 4 wrong PIN/PUK (tries left shown), blocked, the new PINs differ
(``PIN-MISMATCH``), a PIN not 6–8 characters (``PINFORMAT``) or the last try refused; 11 unblocking
not allowed; 2 usage (no terminal and no ``--pin-stdin``, too few lines); 3 no card or reader.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Literal

from card import backend as assembly  # called through the module: tests put an in-process card there
from card.backend import Backend, audit_log
from card.config import Settings, UsageError
from card.errors import InvalidPinError, LastPinTryError, PinBlockedError, PinFormatError, PinMismatchError
from card.secret import Secret
from card.service import RenewalRefused, check_pin_format
from card.words import CARD_UNLOCKED, PIN_CHANGED, Words, blocked_by_change, unlock_not_allowed
from tui.cli.demo import cli_demo_backend
from tui.cli.exit_codes import EXIT_OK
from tui.cli.failure import fail
from tui.cli.output import out, print_notices, settings_for
from tui.cli.renew_pin import stdin_secret

Kind = Literal["change", "unlock"]
PROMPTS = {"change": ("Current PIN: ", "New PIN (6 to 8 characters): ", "New PIN again: "),
           "unlock": ("PUK: ", "New PIN (6 to 8 characters): ", "New PIN again: ")}
"""What the terminal asks, in the order ``--pin-stdin`` reads its lines."""


class UnlockNotAllowed(RenewalRefused):
    """``unblock`` where ``ui.allow_unlock`` is false: refused, nothing sent (exit 11)."""

    title = "Unlocking is turned off"
    code = "UNLOCK-NOT-ALLOWED"


def cmd_change_pin(args: argparse.Namespace) -> int:
    """``cardrenew change-pin``: the current PIN, then a new one twice."""
    return _run(args, "change")


def cmd_unblock(args: argparse.Namespace) -> int:
    """``cardrenew unblock``: the PUK, then a new PIN twice (support staff; ``ui.allow_unlock``)."""
    return _run(args, "unlock")


def _run(args: argparse.Namespace, kind: Kind) -> int:
    settings = settings_for(args)
    backend: Backend | None = None
    try:
        if settings.token.is_pkcs11:  # finding F-13: never act on a PIV card in a reader instead of the token
            raise UsageError(f"{args.command} changes the PIN of a PIV card through PC/SC; this configuration names a "
                             "PKCS#11 token (card.interface = \"pkcs11\"), whose PIN is changed with its own tool",
                             next_step="Use the token's own tool (e.g. `pkcs11-tool --module MODULE --change-pin`, or "
                                       "--init-pin with the SO PIN to unblock it). Nothing was sent to any card.")
        if kind == "unlock" and not settings.allow_unlock:
            words = unlock_not_allowed(settings.ra_contact)
            _audit_refusal(settings, kind, UnlockNotAllowed.code)
            raise UnlockNotAllowed(words.message, next_step=words.next_step)
        backend = (cli_demo_backend(args, settings) if args.demo
                   else assembly.pcsc_backend(settings, args.reader, with_issuer=False))
        return _change(args, backend, kind)
    except Exception as exc:  # noqa: BLE001 - mapped to documented exit codes
        return fail(args, exc)
    finally:
        if backend is not None:
            backend.close()
            print_notices(backend)


def _change(args: argparse.Namespace, backend: Backend, kind: Kind) -> int:
    """Guard, read the secrets, send them through the door, say what happened."""
    what: Literal["PIN", "PUK"] = "PIN" if kind == "change" else "PUK"
    summary = backend.read_card(pin_retries=False).result()
    guid = summary.card_id
    left = backend.tries_left(what).result()
    ra = backend.settings.ra_contact
    if left == 0:
        words = blocked_by_change(what, ra) if what == "PUK" else Words(
            "Card blocked", "The PIN is blocked, so it cannot be changed; nothing was sent.",
            f"Contact {ra}" + (" or unlock it with `cardrenew unblock`." if backend.settings.allow_unlock else "."))
        backend.audit.write_quietly(event=_event(kind), card_guid=guid, outcome="refused", error_code="BLOCKED")
        raise PinBlockedError(words.message, next_step=words.next_step)
    if left == 1 and not _last_try_allowed(args, what):
        backend.audit.write_quietly(event=_event(kind), card_guid=guid, outcome="refused", error_code="PIN-LAST-TRY")
        raise LastPinTryError(f"only 1 {what} try is left; a wrong {what} would "
                              + ("block the card" if what == "PIN" else "block the PUK for good")
                              + "; nothing was sent", next_step=f"The {what} was not sent and no try was used. If you "
                              "are sure of it, run again with --last-try (or answer yes on a terminal); otherwise "
                              f"contact {ra}.")
    secret, new_pin = read_secrets(args, kind, backend.settings.pin_characters)
    door = backend.change_pin if kind == "change" else backend.unblock_pin
    try:
        door(secret, new_pin, card_guid=guid).result()  # the door audits the outcome and wipes both
    except InvalidPinError as exc:
        raise InvalidPinError(exc.attempts_remaining, what) from None
    except PinBlockedError:
        words = blocked_by_change(what, ra)
        raise PinBlockedError(words.message, next_step=words.next_step) from None
    done = PIN_CHANGED if kind == "change" else CARD_UNLOCKED
    out(args, {"outcome": "changed" if kind == "change" else "unlocked", "reader": summary.reader,
               "card_guid": guid, "title": done.title, "message": done.message, "exit_code": EXIT_OK},
        f"{done.title}. {done.message}")
    return EXIT_OK


def _event(kind: Kind) -> str:
    return "change_pin" if kind == "change" else "unlock_card"


def _audit_refusal(settings: Settings, kind: Kind, code: str) -> None:
    """An audit record of a refusal made before any card was opened (best effort)."""
    audit_log(settings).write_quietly(event=_event(kind), outcome="refused", error_code=code)


def _last_try_allowed(args: argparse.Namespace, what: str) -> bool:
    """``--last-try``, or a yes on the terminal (never asked with ``--pin-stdin``)."""
    if args.last_try:
        return True
    if args.pin_stdin or not sys.stdin.isatty():
        return False
    blocks = "block the card" if what == "PIN" else "block the PUK: the card could then no longer be unlocked here"
    answer = input(f"Only 1 {what} try is left: a wrong {what} would {blocks}. Send it? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def read_secrets(args: argparse.Namespace, kind: Kind, pin_characters: str) -> tuple[Secret, Secret]:
    """The current PIN (or the PUK) and the new PIN, checked before anything is sent: only
    ``pin_characters`` (``ui.pin_characters``, as the TUI's PIN fields; break-it finding F-3: an
    arrow key's ``ESC [ A`` must never reach the card), 6–8 characters, the new one typed the same
    twice. From the terminal (no echo) or ``--pin-stdin``.

    Raises:
        UsageError: no terminal and no ``--pin-stdin``, or a line missing on standard input.
        PinFormatError, PinMismatchError: nothing sent, no try used.
    """
    values: list[Secret] = []
    try:
        for prompt in PROMPTS[kind]:
            values.append(_read_one(args, prompt))
            _only_pin_characters(values[-1], prompt, pin_characters)
        secret, new_pin, again = values
        if new_pin != again:
            raise PinMismatchError("the new PIN and its repetition differ; nothing was sent to the card")
        check_pin_format(secret)
        check_pin_format(new_pin)
    except BaseException:
        for value in values:
            value.wipe()
        raise
    again.wipe()
    return secret, new_pin


def _only_pin_characters(value: Secret, prompt: str, pin_characters: str) -> None:
    """Raises PinFormatError (nothing sent) when ``value`` holds a character outside ``pin_characters``."""
    if not value.consists_of(pin_characters):
        name = _name(prompt)
        allowed = "digits" if pin_characters == "0123456789" else f"the characters {pin_characters!r}"
        raise PinFormatError(f"{name} holds a character a PIN cannot contain (only {allowed}: ui.pin_characters; "
                             "an arrow key or a tab counts too); nothing was sent to the card",
                             next_step="Type it again with PIN characters only. No try was used.")


def _name(prompt: str) -> str:
    """``"Current PIN: "`` → ``"the current PIN"`` (``"PUK: "`` → ``"the PUK"``)."""
    name = prompt.split(" (")[0].rstrip(": ")
    return "the " + (name if name.isupper() else name[0].lower() + name[1:])


def _read_one(args: argparse.Namespace, prompt: str) -> Secret:
    name = _name(prompt).removeprefix("the ")
    if args.pin_stdin:
        value = stdin_secret()
        if not value:
            raise UsageError(f"--pin-stdin: no {name} on standard input",
                             next_step="Give three lines on standard input: the current PIN (unblock: the PUK), "
                                       "the new PIN, the new PIN again. Nothing was sent; no try was used.")
        return value
    if not sys.stdin.isatty():
        raise UsageError(f"no terminal to ask for the {name}",
                         next_step="Run with --pin-stdin and give the secrets on standard input, one per line.")
    return Secret(getpass.getpass(prompt))
