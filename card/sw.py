"""Status words SW1SW2 (ISO 7816-4 §5.1.3, SP 800-73-4 Part 2 Table 6), as the card layers use them.

A status word is an ``int`` (``0x6A82``); :class:`SW` names the ones we send or look at. Three are
families whose SW2 carries a number: ``61 XX`` (XX more bytes, ``00`` = 256 or more), ``6C XX``
(resend with Le = XX) and ``63 CX`` (X tries left); their members hold SW2 = 0, and
:func:`family` / :func:`sw2` take a status word apart.
"""

from __future__ import annotations

from enum import IntEnum, unique


@unique
class SW(IntEnum):
    """Status words (ISO 7816-4 §5.1.3; SP 800-73-4 Part 2 Table 6 for the PIV meanings)."""

    OK = 0x9000
    """Normal processing."""
    BYTES_REMAINING = 0x6100
    """``61 XX``: XX more response bytes (``00``: 256 or more); fetch them with GET RESPONSE."""
    VERIFY_FAILED = 0x6300
    """``63 00``: verification failed, no counter given (an old YubiKey NEO also says ``63 0X``)."""
    VERIFY_FAILED_TRIES = 0x63C0
    """``63 CX``: verification failed, X tries left."""
    WRONG_LENGTH = 0x6700
    """Wrong length (Lc or the data)."""
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    """The PIN or the management key must be verified first."""
    AUTHENTICATION_BLOCKED = 0x6983
    """Authentication method blocked (the PIN or PUK has no tries left)."""
    REFERENCE_DATA_NOT_USABLE = 0x6984
    """Reference data not usable."""
    CONDITIONS_NOT_SATISFIED = 0x6985
    """Conditions of use not satisfied (e.g. GET RESPONSE with nothing pending)."""
    INCORRECT_DATA = 0x6A80
    """Incorrect parameter in the command data field."""
    FUNCTION_NOT_SUPPORTED = 0x6A81
    """Function not supported."""
    NOT_FOUND = 0x6A82
    """Data object or application not found."""
    NOT_ENOUGH_MEMORY = 0x6A84
    """Not enough memory (the object does not fit)."""
    INCORRECT_P1_P2 = 0x6A86
    """Incorrect parameters P1-P2 (PIV: an algorithm or key reference the card does not have)."""
    REFERENCE_NOT_FOUND = 0x6A88
    """Referenced data (a key or a PIN reference) not found."""
    WRONG_P1_P2 = 0x6B00
    """Wrong parameters P1-P2."""
    WRONG_LE = 0x6C00
    """``6C XX``: wrong Le; resend the command with Le = XX."""
    INS_NOT_SUPPORTED = 0x6D00
    """Instruction not supported (e.g. a Yubico extension on another card)."""
    CLA_NOT_SUPPORTED = 0x6E00
    """Class not supported."""


def family(sw: int) -> int:
    """SW1 with SW2 = 0: ``family(0x6110) == SW.BYTES_REMAINING``, ``family(0x6C20) == SW.WRONG_LE``."""
    return sw & 0xFF00


def sw2(sw: int) -> int:
    """The low byte of a status word (a length for ``61 XX`` / ``6C XX``)."""
    return sw & 0xFF
