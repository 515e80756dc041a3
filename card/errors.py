"""Errors raised by the card layers.

Every error carries a short user-facing ``title`` and a ``next_step`` sentence so that the
TUI and the CLI can show the user what happened *and* what to do, from one place.
"""

from __future__ import annotations

from card.sw import SW
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

    def __init__(self, attempts_remaining: int | None, what: str = "PIN") -> None:
        self.attempts_remaining = attempts_remaining
        if what != "PIN":  # the PUK (RESET RETRY COUNTER)
            self.title = f"Wrong {what}"
        super().__init__(not_accepted(what, attempts_remaining), next_step=f"Enter the {what} again carefully.")


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


class CardChangedError(CardError):
    """Another card is in the reader than the one a PIN was typed for (its GUID differs, or the
    reader now holds none that says): the PIN was not sent, no try was used. Raised by the door
    before anything is sent to the card (``RenewalRequest.expect_card``, the renewal queue)."""

    title = "A different card is in the reader"
    code = "CARD-CHANGED"
    next_step = ("The PIN was not sent and nothing was changed. Check which card is in the reader, then enter "
                 "that card's own PIN.")
