"""The software card's PIN and PUK commands: VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER
(SP 800-73-4 Part 2 §3.2.1–§3.2.3), with real retry counters kept in the card's state."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from card.emulator.commands import CardStatus, Response
from card.piv.model import KEY_REF_PIN, KEY_REF_PUK
from card.sw import SW

if TYPE_CHECKING:
    from card.emulator.card import SoftPivCard


def padded(secret: str) -> bytes:
    """PIV reference data as the card compares it: UTF-8, right-padded with ``FF`` to 8 bytes."""
    return secret.encode("utf-8").ljust(8, b"\xff")


def verify(card: SoftPivCard, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> Response:
    """VERIFY the PIN (``80``): empty data asks the tries left, P1 ``FF`` resets the verification."""
    state = card.state
    if p2 != KEY_REF_PIN:
        raise CardStatus(SW.REFERENCE_NOT_FOUND)
    if p1 == 0xFF:
        card.pin_verified = False
        return b"", SW.OK
    if not data:
        if state.pin_retries == 0:
            raise CardStatus(SW.AUTHENTICATION_BLOCKED)
        return b"", (SW.OK if card.pin_verified else SW.VERIFY_FAILED_TRIES | state.pin_retries)
    if len(data) != 8:
        raise CardStatus(SW.INCORRECT_DATA)
    if state.pin_retries == 0:
        raise CardStatus(SW.AUTHENTICATION_BLOCKED)
    if hmac.compare_digest(data, padded(state.pin)):
        changed = state.pin_retries != state.pin_max_retries
        state.pin_retries = state.pin_max_retries
        card.pin_verified = True
        card.pin_just_verified = True
        if changed:
            card.save()
        return b"", SW.OK
    card.pin_verified = False
    state.pin_retries -= 1
    card.save()
    return b"", SW.VERIFY_FAILED_TRIES | state.pin_retries


def change_reference(card: SoftPivCard, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> Response:
    """CHANGE REFERENCE DATA of the PIN (``80``) or PUK (``81``): old block + new block."""
    state = card.state
    if p2 not in (KEY_REF_PIN, KEY_REF_PUK) or len(data) != 16:
        raise CardStatus(SW.INCORRECT_DATA)
    is_pin = p2 == KEY_REF_PIN
    retries = state.pin_retries if is_pin else state.puk_retries
    if retries == 0:
        raise CardStatus(SW.AUTHENTICATION_BLOCKED)
    current = state.pin if is_pin else state.puk
    if not hmac.compare_digest(data[:8], padded(current)):
        if is_pin:
            state.pin_retries -= 1
        else:
            state.puk_retries -= 1
        card.save()
        return b"", SW.VERIFY_FAILED_TRIES | (retries - 1)
    new = data[8:].rstrip(b"\xff").decode("utf-8", "replace")
    if is_pin:
        state.pin, state.pin_retries = new, state.pin_max_retries
    else:
        state.puk, state.puk_retries = new, state.puk_max_retries
    card.save()
    return b"", SW.OK


def reset_retry(card: SoftPivCard, p1: int, p2: int, data: bytes, le: int | None, _pv: bool) -> Response:
    """RESET RETRY COUNTER: the PUK block + the new PIN block unblock the PIN."""
    state = card.state
    if p2 != KEY_REF_PIN or len(data) != 16:
        raise CardStatus(SW.INCORRECT_DATA)
    if state.puk_retries == 0:
        raise CardStatus(SW.AUTHENTICATION_BLOCKED)
    if not hmac.compare_digest(data[:8], padded(state.puk)):
        state.puk_retries -= 1
        card.save()
        return b"", SW.VERIFY_FAILED_TRIES | state.puk_retries
    state.pin = data[8:].rstrip(b"\xff").decode("utf-8", "replace")
    state.pin_retries = state.pin_max_retries
    state.puk_retries = state.puk_max_retries
    card.save()
    return b"", SW.OK
