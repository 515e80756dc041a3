"""Every python-pkcs11 exception mapped, at this boundary, to the errors of :mod:`card.errors`
(PKCS#11 v2.40 §5.1 return values). Nothing above card.pkcs11 sees a binding exception.

``mapped(function, doing)`` wraps one operation: ``function`` is the PKCS#11 function it is
about (named in a :class:`~card.errors.TokenCommandError`), ``doing`` what it tries, in the words
of :func:`card.words.not_supported_by_token` ("RSA-2048 key generation", "CKM_ECDSA signatures").
PIN results are mapped by the caller (:meth:`card.pkcs11.token.Pkcs11Token.log_in`), which reads
the token's PIN flags first; here a stray one still becomes the nearest PIN error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from pkcs11 import exceptions as p11

from card import words
from card.errors import (
    CardError,
    InvalidPinError,
    NotSupportedError,
    PinBlockedError,
    PinFormatError,
    ReadOnlyTokenError,
    TokenCommandError,
    TokenDeviceError,
    TokenFullError,
    TokenRemovedError,
    TokenStorageError,
)

_CKR_SPELLING = {"TokenNotRecognised": "TOKEN_NOT_RECOGNIZED", "FunctionCancelled": "FUNCTION_CANCELED",
                 "AnotherUserAlreadyLoggedIn": "USER_ANOTHER_ALREADY_LOGGED_IN", "DataLenRange": "DATA_LEN_RANGE",
                 "PinLenRange": "PIN_LEN_RANGE", "KeySizeRange": "KEY_SIZE_RANGE",
                 "SignatureLenRange": "SIGNATURE_LEN_RANGE"}

REMOVED = (p11.DeviceRemoved, p11.TokenNotPresent, p11.SessionHandleInvalid, p11.SessionClosed, p11.SlotIDInvalid)
"""The token (or its session) is gone: pulled out, or the module reset it."""
DEVICE = (p11.DeviceError, p11.TokenNotRecognised, p11.GeneralError)
WRITES = ("C_GenerateKeyPair", "C_CreateObject", "C_DestroyObject", "C_SetAttributeValue")
"""The functions that change a token."""
READ_ONLY = (p11.TokenWriteProtected, p11.SessionReadOnly, p11.AttributeReadOnly)
UNSUPPORTED = (p11.MechanismInvalid, p11.MechanismParamInvalid, p11.FunctionNotSupported, p11.KeySizeRange,
               p11.DomainParamsInvalid, p11.KeyTypeInconsistent, p11.AttributeValueInvalid,
               p11.AttributeTypeInvalid, p11.TemplateInconsistent, p11.TemplateIncomplete)


def ckr_name(exc: BaseException) -> str:
    """The PKCS#11 return value's name of a binding exception: ``PinIncorrect`` → ``CKR_PIN_INCORRECT``;
    the binding's catch-all (``PKCS11Error("Unmapped error code 0x…")``) keeps its text."""
    name = type(exc).__name__
    if type(exc) is p11.PKCS11Error:
        text = str(exc).strip()
        return text or "CKR_GENERAL_ERROR"
    snake = _CKR_SPELLING.get(name) or re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()
    return f"CKR_{snake}"


def translate(exc: p11.PKCS11Error, function: str, doing: str) -> CardError:
    """The card error for ``exc`` raised by ``function`` while doing ``doing``."""
    reason = ckr_name(exc)
    if isinstance(exc, REMOVED):
        return TokenRemovedError(f"the token went away during {function} ({reason})")
    if isinstance(exc, (p11.GeneralError, p11.FunctionFailed)) and function in WRITES:
        return TokenStorageError(f"the token could not store the change ({function}: {reason}); SoftHSM2 answers "
                                "so when its token directory is on read-only storage")
    if isinstance(exc, DEVICE):
        return TokenDeviceError(f"{function} failed: {reason}")
    if isinstance(exc, READ_ONLY):
        return ReadOnlyTokenError(f"the token refused to change ({function}: {reason})")
    if isinstance(exc, p11.DeviceMemory):
        return TokenFullError(f"no room on the token for {doing} ({function}: {reason})")
    if isinstance(exc, UNSUPPORTED):
        return NotSupportedError(f"{words.not_supported_by_token(doing)} ({function}: {reason})")
    if isinstance(exc, p11.PinLocked):
        return PinBlockedError("the token says the PIN is locked (CKR_PIN_LOCKED)")
    if isinstance(exc, (p11.PinExpired, p11.UserPinNotInitialized)):
        return PinBlockedError(f"the token's PIN cannot be used ({reason})")
    if isinstance(exc, p11.PinIncorrect):
        return InvalidPinError(None)
    if isinstance(exc, (p11.PinInvalid, p11.PinLenRange)):
        return PinFormatError(f"the token refused the PIN's length or characters ({reason})",
                              next_step="Enter your PIN again carefully. The token did not check it, so no try was used.")
    return TokenCommandError(function, reason)


@contextmanager
def mapped(function: str, doing: str, passthrough: type[p11.PKCS11Error] | None = None) -> Iterator[None]:
    """Raise the :mod:`card.errors` error for any binding exception inside (the binding's own
    ``ArgumentsBad`` included: a wrong call of ours still reaches the user as a card error);
    ``passthrough``: one binding exception the caller handles itself."""
    try:
        yield
    except p11.PKCS11Error as exc:
        if passthrough is not None and isinstance(exc, passthrough):
            raise
        raise translate(exc, function, doing) from exc
