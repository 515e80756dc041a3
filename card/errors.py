"""Errors raised by the card layers.

Every error carries a short user-facing ``title`` and a ``next_step`` sentence so that the
TUI and the CLI can show the user what happened *and* what to do, from one place.
"""

from __future__ import annotations

from card.sw import SW
from card import words
from card.words import not_accepted


class CardError(Exception):
    """Base class of every error the ``card`` package raises."""

    title = "Card error"
    next_step = "Try again. If the problem persists, contact your Registration Authority (RA)."
    code = "CARD"
    reference: str | None = None
    """The renewal reference to quote to the RA, when one was made."""

    def __init__(self, message: str = "", *, next_step: str | None = None) -> None:
        super().__init__(message or self.title)
        if next_step is not None:
            self.next_step = next_step


class ReaderUnavailableError(CardError):
    """No usable reader, or the PC/SC service (pcscd) cannot be reached."""

    title = "Card reader unavailable"
    next_step = "Check that the card reader is connected and that the smart card service (pcscd) is running."
    code = "READER"


class NoCardError(CardError):
    """The reader holds no card."""

    title = "No card in the reader"
    next_step = "Insert your smartcard."
    code = "NOCARD"


class CardRemovedError(CardError):
    """The card was removed (or reset) while it was in use."""

    title = "The card was removed"
    next_step = "Re-insert your smartcard and log on again; an unfinished update is resumed at logon."
    code = "REMOVED"


class ApduError(CardError):
    """The card answered a command with a status word other than ``90 00``.

    Attributes:
        sw: the status word SW1SW2 as an int, e.g. ``0x6A82`` (:class:`card.sw.SW` names them).
    """

    title = "The card refused a command"
    code = "APDU"

    _MEANINGS: dict[int, str] = {
        SW.SECURITY_STATUS_NOT_SATISFIED: "security status not satisfied (PIN or management key needed)",
        SW.AUTHENTICATION_BLOCKED: "authentication method blocked",
        SW.CONDITIONS_NOT_SATISFIED: "conditions of use not satisfied",
        SW.INCORRECT_DATA: "incorrect parameter in command data",
        SW.FUNCTION_NOT_SUPPORTED: "function not supported",
        SW.NOT_FOUND: "data object or application not found",
        SW.NOT_ENOUGH_MEMORY: "not enough memory on the card",
        SW.INCORRECT_P1_P2: "incorrect P1/P2",
        SW.REFERENCE_NOT_FOUND: "referenced data (key) not found",
        SW.WRONG_P1_P2: "wrong P1/P2",
        SW.INS_NOT_SUPPORTED: "instruction not supported",
        SW.CLA_NOT_SUPPORTED: "class not supported",
        SW.WRONG_LENGTH: "wrong length",
    }

    def __init__(self, sw: int, message: str = "") -> None:
        self.sw = sw
        meaning = self._MEANINGS.get(sw, "unexpected status")
        super().__init__(message or f"card answered SW1SW2={sw:04X} ({meaning})")


class InvalidPinError(CardError):
    """VERIFY failed (``63 CX``). ``attempts_remaining`` tries are left (None if unknown)."""

    title = "Wrong PIN"
    code = "PIN"

    def __init__(self, attempts_remaining: int | None, what: str = "PIN", *, few_left: bool = False) -> None:
        self.attempts_remaining = attempts_remaining
        self.few_left = few_left
        """A PKCS#11 token said ``CKF_USER_PIN_COUNT_LOW`` without a number (``attempts_remaining`` None)."""
        if what != "PIN":  # the PUK (RESET RETRY COUNTER)
            self.title = f"Wrong {what}"
        message = not_accepted(what, attempts_remaining) + (f" {words.FEW_TRIES}" if few_left else "")
        super().__init__(message, next_step=f"Enter the {what} again carefully.")


class PinBlockedError(CardError):
    """The PIN (or PUK) is blocked (``69 83``)."""

    title = "Card blocked"
    code = "BLOCKED"
    next_step = "Your card's PIN is blocked. Contact your Registration Authority (RA) to unlock it."


class PinFormatError(CardError):
    """The PIN cannot be sent: PIV references are 6–8 bytes after UTF-8 encoding (F07)."""

    title = "PIN not valid"
    code = "PINFORMAT"
    next_step = "Enter your PIN again: it has 6 to 8 characters. No try was used."


class PinMismatchError(PinFormatError):
    """The new PIN and its repetition differ: nothing was sent, no try used."""

    title = "The new PINs differ"
    code = "PIN-MISMATCH"
    next_step = "Enter the new PIN twice, the same both times. Nothing was sent to the card; no try was used."


class ManagementKeyError(CardError):
    """Management-key (``9B``) authentication failed or the key algorithm does not match."""

    title = "Card write access refused"
    code = "MGMTKEY"
    next_step = "The card management key is not the one configured. Contact your Registration Authority (RA)."


class BadResponseError(CardError):
    """The card answered with data that does not parse: the one error of every parser of card
    replies — BER-TLV (:mod:`card.tlv`: truncation, indefinite or over-long lengths), the APDU layer
    (:mod:`card.apdu`: a response over 64 KiB, endless ``61 XX``) and the PIV replies
    (:mod:`card.piv`: a GENERATE template that is not a key of the asked type, a CHUID without a
    GUID, a malformed GENERAL AUTHENTICATE or metadata reply)."""

    title = "Unexpected answer from the card"
    code = "BADRESP"


class NotSupportedError(CardError):
    """The card or the issuer does not support the requested algorithm or operation."""

    title = "Not supported"
    code = "UNSUPPORTED"


class CertificateObjectError(CardError):
    """A slot's certificate object cannot be decoded (junk, bad compression, too large), or a
    certificate in it does not parse whole (:func:`card.certificates.load_certificate`: the message
    names the field, e.g. "the subject name does not decode"). Reading a card turns it into the
    slot's "unreadable" state (F15); the other slots are read as usual."""

    title = "Unreadable certificate"
    code = "CERTOBJ"


class CertificateTooLargeError(CardError):
    """The certificate does not fit the card's certificate object (F05): checked before writing,
    and the card's ``6A 84`` / ``67 00`` to PUT DATA mean the same."""

    title = "Certificate too large for this card"
    code = "TOOLARGE"
    next_step = "Nothing was written to the certificate object. Ask the RA for a shorter certificate profile."


class StateFileError(CardError):
    """A file cardrenew keeps (state directory, journal, audit log) cannot be written or read
    safely: no space (``ENOSPC``), no permission (``EACCES``), a read-only file system (``EROFS``),
    a disk error (``EIO``), or something other than a regular file in its place.

    Raised by preflight before anything is asked of the card or the CA (nothing changed), and
    reported per slot when it happens after the card changed (the journal keeps what it can and
    the update resumes once the file can be written again).

    Attributes:
        path: the file or directory concerned; errno: the ``errno`` number, or None.
    """

    title = "A file cardrenew keeps could not be written"
    code = "STATEFILE"

    def __init__(self, message: str, *, path: object = None, errno: int | None = None,
                 next_step: str | None = None) -> None:
        super().__init__(message, next_step=next_step)
        self.path = path
        self.errno = errno
        self.kept_at: object = None
        """Where the journal was written instead (the fallback directory), or None."""


class OperationCancelled(CardError):
    """A wait (the CA's reply, the RA hook, a back-off, a PENDING poll, another program's hold on
    the card) was ended by the caller's cancellation token: SIGTERM, SIGINT, SIGHUP or the app
    closing. Raised before the card was changed, nothing was changed; after it, the engine keeps
    the journal and the update resumes."""

    title = "Stopped"
    code = "CANCELLED"
    next_step = "Nothing more was done after the stop. Run `cardrenew renew` again when you are ready."


class CardBusyError(ReaderUnavailableError):
    """Another program is using the card: it holds a PC/SC transaction (or the card exclusively)
    longer than we wait (SCARD_E_SHARING_VIOLATION, or SCardBeginTransaction not granted), or it
    reset the card while we used it (SCARD_W_RESET_CARD with the card still in the reader)."""

    title = "Another program is using the card"
    code = "BUSY"
    next_step = ("Wait until the other program (another cardrenew, gpg's scdaemon, a browser or middleware) has "
                 "finished with the card, then try again. Do not remove the card.")


class CardResetByOtherError(CardRemovedError):
    """Another program reset the card while we used it (SCARD_W_RESET_CARD, the card still in the
    reader): the card never left the reader, but its PIN and management-key state are gone, so
    the current run ends as after a removal (journal kept; the update resumes)."""

    title = "Another program reset the card"
    code = "RESET"
    next_step = ("The card was not removed: another program reset it while cardrenew used it. Close the other "
                 "program, then run `cardrenew renew` again (an unfinished update resumes where it stopped).")


class LastPinTryError(CardError):
    """Only one PIN try is left and the caller did not allow spending it (``renew --pin-stdin``
    without ``--allow-last-pin-try``): the PIN was not sent, no try was used. The count comes from
    an empty VERIFY, which spends no try (SP 800-73-4 Part 2 §3.2.1, ``63 C1``)."""

    title = "Only one PIN try is left"
    code = "PIN-LAST-TRY"
    next_step = ("The PIN was not sent and no try was used. If you are sure of the PIN, run again with "
                 "--allow-last-pin-try, or use the TUI (it asks before sending); otherwise contact your "
                 "Registration Authority (RA).")


# -- PKCS#11 tokens (issue 14): card.pkcs11 maps every binding error to one of these ---------------
class TokenNotFoundError(NoCardError):
    """The PKCS#11 module shows no token matching ``[card] token_label`` / ``token_serial`` (or
    none at all); the message names the module and the tokens it does show."""

    title = "Token not found"
    code = "NOTOKEN"
    next_step = words.TOKEN_NOT_FOUND_NEXT


class TokenRemovedError(CardRemovedError):
    """The token went away while in use (``CKR_DEVICE_REMOVED``, ``CKR_TOKEN_NOT_PRESENT``, or its
    session was closed under us: ``CKR_SESSION_HANDLE_INVALID`` / ``CKR_SESSION_CLOSED``)."""

    title = "The token was removed"
    next_step = words.TOKEN_REMOVED_NEXT


class TokenDeviceError(CardRemovedError):
    """The token or its reader failed (``CKR_DEVICE_ERROR``, ``CKR_TOKEN_NOT_RECOGNIZED``). Treated as
    a removal: the run stops where it is, the journal is kept and the next run resumes."""

    title = "The token reported a device error"
    code = "DEVICE"
    next_step = words.DEVICE_ERROR_NEXT


class TokenStorageError(TokenDeviceError):
    """The token could not store a change: a write (``C_GenerateKeyPair``, ``C_CreateObject``,
    ``C_DestroyObject``, ``C_SetAttributeValue``) answered ``CKR_GENERAL_ERROR`` or
    ``CKR_FUNCTION_FAILED`` — SoftHSM2 does so when its token directory is on read-only or full
    storage. The run stops as for a device error (the journal is kept, the next run resumes), but
    the next step follows the cause: the storage, not a re-insertion (tester F-19)."""

    title = "The token could not store the change"
    code = "STORAGE"
    next_step = words.TOKEN_STORAGE_NEXT


class ReadOnlyTokenError(NotSupportedError):
    """The token cannot be written: it says so (``CKF_WRITE_PROTECTED``), or a write was refused
    (``CKR_TOKEN_WRITE_PROTECTED``, ``CKR_SESSION_READ_ONLY``). Nothing was changed on it."""

    title = "The token is read-only"
    code = "READONLY"
    next_step = words.READ_ONLY_NEXT


class TokenFullError(NotSupportedError):
    """No room on the token for a new key or certificate (``CKR_DEVICE_MEMORY``); nothing was removed."""

    title = "The token is full"
    code = "FULL"
    next_step = words.TOKEN_FULL_NEXT


class TokenCommandError(CardError):
    """A PKCS#11 function failed with a return value no other error covers (the token's ``ApduError``).

    Attributes:
        function: the PKCS#11 function, e.g. ``"C_Sign"``; reason: the CKR name, e.g. ``"CKR_FUNCTION_FAILED"``.
    """

    title = "The token refused a command"
    code = "TOKEN"

    def __init__(self, function: str, reason: str, message: str = "") -> None:
        self.function = function
        self.reason = reason
        super().__init__(message or f"{function} failed: {reason}")


class CardChangedError(CardError):
    """Another card is in the reader than the one a PIN was typed for (its GUID differs, or the
    reader now holds none that says): the PIN was not sent, no try was used. Raised by the door
    before anything is sent to the card (``RenewalRequest.expect_card``, the renewal queue)."""

    title = "A different card is in the reader"
    code = "CARD-CHANGED"
    next_step = ("The PIN was not sent and nothing was changed. Check which card is in the reader, then enter "
                 "that card's own PIN.")


class TokenKeyError(ApduError):
    """No private key at a PKCS#11 token's ``CKA_ID``, or one of another type than asked for.

    An :class:`ApduError` with the status word a PIV card gives for the same case — ``6A 88`` (no
    such key) or ``6A 80`` (a key of another type) — so the engine's test-signature loop
    (:func:`card.piv.quirks.no_key_of_this_type`) reads a token as it reads a card.
    """

    title = "No such key on the token"
    code = "NOKEY"

    def __init__(self, message: str, *, other_type: bool = False) -> None:
        super().__init__(SW.INCORRECT_DATA if other_type else SW.REFERENCE_NOT_FOUND, message)
