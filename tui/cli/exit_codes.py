"""The CLI's exit codes (stable, documented in the README's *Exit codes* table).

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

from typing import Final

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_CARD: Final = 3
EXIT_PIN: Final = 4
EXIT_NOT_DUE: Final = 10
EXIT_REFUSED: Final = 11
EXIT_CA: Final = 12
EXIT_PARTIAL: Final = 13

EXIT_CODES: Final[dict[int, str]] = {
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
"""Each exit code's meaning in a few words: ``cardrenew --help`` lists them."""
