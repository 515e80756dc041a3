"""What the user is told, written once (issue 13): the TUI's panes and dialogs, the CLI's output
and the engine's refusals take their sentences from here, so the same state reads the same
everywhere.

A *clause* (``up_to_date``, ``expired``) is lower-case and unterminated, for an error message that
follows a title (``cardrenew: Renewal not possible: the certificate …``) or is joined with more;
:class:`Words` holds what a screen shows: a title, a message (full sentences) and a next step.

This module imports nothing from ``card``: the errors (the lowest layer) and the engine use it
too. The read model is therefore described by the small protocols below, which
:class:`card.renewal.CardSummary` and :class:`card.renewal.SlotStatus` satisfy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class _Label(Protocol):
    @property
    def label(self) -> str: ...


class _SlotId(Protocol):
    @property
    def hex(self) -> str: ...


class ConfiguredSlot(Protocol):
    """A configured slot (or a PKCS#11 token's key) as read (:class:`card.renewal.SlotStatus`): its
    label and its name (the slot number ``"9A"``, or the CKA_ID in hex)."""

    @property
    def setting(self) -> _Label: ...

    @property
    def name(self) -> str: ...


class CardState(Protocol):
    """What the words of the update check need of a card (:class:`card.renewal.CardSummary`)."""

    @property
    def expired(self) -> Sequence[ConfiguredSlot]: ...

    def next_renewal_date(self, window_days: int) -> dt.date | None: ...


@dataclass(frozen=True)
class Words:
    """What one state or outcome tells the user.

    Attributes:
        title: a few words, shown as a dialog's title or before the message (``Title: message``).
        message: what happened, in full sentences.
        next_step: what to do now; empty when there is nothing to do.
    """

    title: str
    message: str
    next_step: str = ""


def sentence(text: str) -> str:
    """``text`` as a sentence: its first letter upper-case, ending with a full stop (or ``!``/``?``).
    A first word that is a name to type (``issuer.directory``, ``timeout_s``) keeps its case."""
    text = text.strip()
    if not text:
        return text
    first = text.split(maxsplit=1)[0]
    if not any(mark in first for mark in "._/`="):
        text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


# -- PIN and PUK tries ----------------------------------------------------------------------------
def tries_left(left: int, what: str = "PIN") -> str:
    """``"2 tries left"``; with one PIN try left, ``"1 try left before your card is blocked"``
    (a wrong PIN then blocks the card, SP 800-73-4 Part 2 §3.2.1). No full stop."""
    if left == 1:
        return "1 try left before your card is blocked" if what == "PIN" else "1 try left"
    return f"{left} tries left"


def not_accepted(what: str, left: int | None) -> str:
    """The card refused a PIN or PUK (``63 CX``): ``"The PIN was not accepted. 2 tries left."``;
    ``left`` None: the card did not say how many are left."""
    return f"The {what} was not accepted." + ("" if left is None else f" {tries_left(left, what)}.")


UNCOUNTED_TRIES = "not blocked (the token does not say how many tries are left)"
"""A PKCS#11 token's PIN that is neither locked nor on its final try: PKCS#11 gives no count."""


def pin_state(pin_retries: int | None, ra_contact: str, *, counted: bool = True) -> str:
    """The PIN as ``status`` shows it: ``verified`` (None), blocked (0, whom to contact), or the tries
    left. ``counted`` False (a PKCS#11 token, whose flags say only locked / final try): None is
    :data:`UNCOUNTED_TRIES`."""
    if pin_retries is None:
        return "verified" if counted else UNCOUNTED_TRIES
    if pin_retries == 0:
        return f"BLOCKED — contact {ra_contact}"
    return tries_left(pin_retries)


NOT_WORKING = {"unfinished": "Not working: finish the update", "key_mismatch": "Not working: key does not match"}
"""The Card tab's status of a slot that cannot sign for the certificate it shows (``status``'s states
``unfinished`` and ``key_mismatch``, :func:`card.renewal.slot_condition`), instead of its expiry's."""


# -- the update check (DESIGN §1.3) ---------------------------------------------------------------
def slot_names(slots: Iterable[ConfiguredSlot]) -> str:
    """``"Authentication (9A), Signature (9C)"``: the configured labels and slot numbers."""
    return ", ".join(f"{s.setting.label} ({s.name})" for s in slots)


def up_to_date(next_renewal: dt.date | None) -> str:
    """Clause: ``"your card is up to date; next renewal from 2027-01-01"`` (no date: none is known)."""
    return "your card is up to date" + (f"; next renewal from {next_renewal.isoformat()}" if next_renewal else "")


def expired(names: str) -> str:
    """Clause: a certificate has expired, and an expired one is not renewed here (the RA re-issues it)."""
    return f"the certificate {names} has expired; self-service renewal of an expired certificate is not allowed"


def update_words(summary: CardState, check: _Named, window_days: int, ra_contact: str) -> Words | None:
    """What *Update My Card* (TUI) and ``cardrenew renew`` (CLI) say when there is nothing to
    renew now. ``check`` is the card's :class:`card.renewal.UpdateCheck` (``update_check(summary)``):
    up to date, a certificate has expired, or no slot holds a certificate. None: an update is
    available or an unfinished one can be resumed (the caller asks for the PIN).
    """
    if check.name == "UP_TO_DATE":
        return Words("Your card is up to date", sentence(up_to_date(summary.next_renewal_date(window_days))))
    if check.name == "EXPIRED":
        return Words("Renewal not possible",
                     sentence(expired(slot_names(summary.expired)) + "; nothing was changed on your card"),
                     f"Contact {ra_contact}.")
    if check.name == "NOTHING_TO_RENEW":
        return Words("Nothing to renew", "Your card holds no certificate that can be renewed here.",
                     f"Contact {ra_contact}.")
    return None


def blocked_words(ra_contact: str) -> Words:
    """*Update My Card* on a card whose PIN is blocked."""
    return Words("Card blocked", "Your PIN is blocked, so your card cannot be updated.",
                 f"Contact {ra_contact} to unlock it.")


# -- Change passcode / Unlock card (the TUI's dialogs; ``cardrenew change-pin`` / ``unblock``) ------
PIN_CHANGED = Words("Your passcode (PIN) has been changed", "Use the new PIN from now on.")
CARD_UNLOCKED = Words("Your card is unlocked", "The PIN has been reset. Log on with the new PIN.")


def unlock_not_allowed(ra_contact: str) -> Words:
    """``cardrenew unblock`` where ``ui.allow_unlock`` is false (the TUI then offers no *Unlock card*)."""
    return Words("Unlocking is turned off",
                 "Unlocking a card with the PUK is not allowed here (ui.allow_unlock is false); nothing was sent "
                 "to the card.",
                 f"Contact {ra_contact} to unlock the card, or have support staff's configuration set "
                 "ui.allow_unlock = true.")


def blocked_by_change(what: str, ra_contact: str) -> Words:
    """The card answered a PIN change (``what`` = PIN) or an unlock (``what`` = PUK) with "blocked"."""
    if what == "PUK":
        return Words("Card blocked", "The PUK is blocked: this card can no longer be unlocked here.",
                     f"Contact {ra_contact}.")
    return Words("Card blocked", "The PIN is now blocked.", f"Contact {ra_contact}.")


# -- the token and its renewal mode (issue 14) -----------------------------------------------------
class TokenFacts(Protocol):
    """What the words of a token need (:class:`card.token.TokenInfo`)."""

    @property
    def label(self) -> str: ...

    @property
    def manufacturer(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def serial(self) -> str: ...

    @property
    def side_by_side(self) -> bool: ...


SIDE_BY_SIDE = "The old certificate keeps working until the new one is written."
"""A token whose keys can live side by side (PKCS#11): the new key is made beside the old one, and
the old key and certificate are removed only after the new ones passed the test signature."""
PIV_ORDER = "Do not remove your card."
"""A PIV card (or a PIV card through a PKCS#11 module): the new key replaces the old one in its
slot (DESIGN §3), so the card must stay in the reader until every certificate is written."""


def renewal_mode(side_by_side: bool) -> str:
    """The renewal mode's name, as ``status --json`` gives it: ``side_by_side`` | ``piv_order``."""
    return "side_by_side" if side_by_side else "piv_order"


def renewal_mode_words(side_by_side: bool) -> Words:
    """What the logon pane, the Card tab, ``status`` and ``renew`` say about how this card or token
    is renewed: the title names the mode, the message is the one sentence the holder needs."""
    if side_by_side:
        return Words("Side by side", SIDE_BY_SIDE)
    return Words("In place", PIV_ORDER)


def token_name(token: TokenFacts) -> str:
    """The token as the user knows it: ``"cardrenew (SoftHSM project SoftHSM v2, serial 1a2b3c4d)"``;
    the parts the token does not state are left out (``"PIV card"`` for a PIV card without them)."""
    maker = " ".join(p for p in (token.manufacturer.strip(), token.model.strip()) if p)
    details = ", ".join(p for p in (maker, f"serial {token.serial.strip()}" if token.serial.strip() else "") if p)
    label = token.label.strip() or "(no label)"
    return f"{label} ({details})" if details else label


# -- PKCS#11 tokens: what goes wrong (issue 14) ----------------------------------------------------
FEW_TRIES = "The token says few tries are left."
"""``CKF_USER_PIN_COUNT_LOW`` (PKCS#11 v2.40 §5.5, CK_TOKEN_INFO): a wrong PIN was entered since the
last good one; the token does not say how many tries remain."""


def token_seen(label: str, serial: str, initialised: bool = True) -> str:
    """One token as a list of tokens shows it: ``"'cardrenew' (serial 1a2b3c4d)"``;
    ``"an uninitialised token"`` for one with no label to choose it by."""
    if not initialised:
        return "an uninitialised token"
    name = f"'{label.strip()}'" if label.strip() else "a token without a label"
    return f"{name} (serial {serial.strip()})" if serial.strip() else name


def token_wanted(label: str | None, serial: str | None) -> str:
    """The token ``[card]`` asks for: ``"a token labelled 'x' with serial 1a2b"``, or ``"a token"``."""
    parts = ([f"labelled '{label}'"] if label is not None else []) + ([f"with serial {serial}"] if serial is not None else [])
    return "a token " + " ".join(parts) if parts else "a token"


def token_not_found(module: str, wanted: str, seen: Sequence[str]) -> str:
    """No token matches ``[card] token_label`` / ``token_serial``: what the module shows instead."""
    if not seen:
        return f"The PKCS#11 module {module} shows no token."
    return f"The PKCS#11 module {module} shows no {wanted.removeprefix('a ')}; it shows {', '.join(seen)}."


TOKEN_NOT_FOUND_NEXT = ("Insert the token (or connect its reader). If it is inserted, set [card] token_label or "
                        "token_serial to one of the tokens named above, or ask your administrator.")


def several_tokens(module: str, seen: Sequence[str]) -> str:
    """More than one token matches: cardrenew never guesses which one to change."""
    return f"The PKCS#11 module {module} shows more than one token that could be meant: {', '.join(seen)}."


SEVERAL_TOKENS_NEXT = "Set [card] token_label (or token_serial) to the token to renew; nothing was changed."


def module_not_loadable(path: str, reason: str) -> str:
    """``[card] module`` cannot be opened as a PKCS#11 library (a wrong path, not a PKCS#11 library)."""
    return f"the PKCS#11 module {path} cannot be loaded ({reason})"


MODULE_NEXT = ("Set [card] module to the path of your token's PKCS#11 library (for example "
               "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so), or ask your administrator.")

READ_ONLY_NEXT = ("Nothing was changed on the token. Switch off its write protection, or use storage it can "
                  "write to; otherwise contact your Registration Authority (RA).")
TOKEN_REMOVED_NEXT = "Re-insert the token and run cardrenew again; an unfinished update is resumed."
DEVICE_ERROR_NEXT = ("Remove and re-insert the token (or restart its reader), then run cardrenew again; an "
                     "unfinished update is resumed. If it happens again, contact your Registration Authority (RA).")
TOKEN_STORAGE_NEXT = ("The token's storage is read-only or full: ask your IT support to make it writable (or to free "
                      "space on it), then run `cardrenew renew` again: the update resumes where it stopped.")
"""A token that could not store a change (SoftHSM2's token directory on read-only or full storage:
CKR_GENERAL_ERROR at a write; tester F-19). The card is in its reader: never "re-insert it"."""
TOKEN_FULL_NEXT = ("Nothing was removed from the token. Make room on it (or ask your Registration Authority (RA) to), "
                   "then run cardrenew again.")
ADMIN_NEXT = "The token's security officer PIN or management key is not the one configured. Contact your Registration Authority (RA)."


def not_supported_by_token(what: str) -> str:
    """The token cannot do ``what`` (a mechanism or key type): ``"the token does not support …"``."""
    return f"the token does not support {what}"


# -- the renewal queue: several readers at once (issue 15) ----------------------------------------
def pin_for(holder: str | None, reader: str) -> str:
    """The PIN question of one card in the queue, naming its holder and its reader:
    ``"PIN of Alice Anders's card in Virtual PCD 00 00"`` (no colon, no full stop)."""
    whose = f"{holder}'s card" if holder else "the card (no name on it)"
    return f"PIN of {whose} in {reader}"


def pin_for_body(holder: str | None) -> str:
    """What the queue's PIN dialog (and prompt) asks of the one holder it names."""
    who = holder or "the card holder"
    return (f"Only {who} types this PIN. It is sent to this card alone, once, and never kept. Cancel (or an "
            "empty PIN) leaves this card as it is.")


def last_try_for(holder: str | None) -> str:
    """The last-try question in the queue: whose card a wrong PIN would block."""
    who = f"{holder}'s card" if holder else "this card"
    return (f"Only 1 try is left. If this PIN is wrong, {who} is blocked and only your Registration Authority "
            "can unlock it. Send this PIN?")


def queue_summary(renewed: int, failed: int, not_due: int, skipped: int = 0) -> str:
    """The queue's last line: ``"2 renewed, 1 failed, 1 not due"`` (``", 1 skipped"``: due cards whose
    holder gave no PIN; they were not renewed either)."""
    return f"{renewed} renewed, {failed} failed, {not_due} not due" + (f", {skipped} skipped" if skipped else "")
