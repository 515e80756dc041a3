"""The CLI's exit codes (stable, documented in the README's *Exit codes* table).

====  =====================================================================
0     success (renewed; status: nothing due; queue: every card renewed or up to date)
1     unexpected error
2     usage or configuration error
3     no reader, no card, card removed, or pcscd not running
4     wrong PIN (tries left shown) or PIN blocked; change-pin/unblock also: wrong or blocked PUK,
      the new PINs differ, a PIN that is not 6–8 PIN characters, the last try not allowed
10    nothing to renew: every certificate is valid beyond the window (status: some are due)
11    refused: expired certificate, junk in a slot, or failed preflight — contact the RA; or a
      file cardrenew must write (state directory, journal, audit log) is not writable or the
      disk is full — nothing was changed (status: a certificate expired, a slot is unreadable,
      or the PIN is blocked); ``unblock`` where ``ui.allow_unlock`` is false
12    the certificate authority refused or could not be reached; nothing was changed on the card
13    not every certificate was renewed, or a journal/audit file could not be written after the
      card changed; if the card was changed the journal is kept — run ``renew`` again to resume;
      queue: some card was not renewed (failed, refused, or skipped)
14    ``renew --check`` (the dry run): at least one check failed; nothing on the card was changed
      (``change-pin``/``unblock`` never use it)
15    ``audit --verify``: the audit log was edited or cut after it was written
129   ended by SIGHUP (an SSH session dropped), 130 by SIGINT, 143 by SIGTERM (128 + signal),
130,  after the current card step was finished and journalled; the next logon or ``renew``
143   finishes the update
====  =====================================================================

:data:`EXIT_CODES` is the one table: ``cardrenew --help`` lists it, and the README's *Exit codes*
table documents the same codes (tests/card/test_cli_exit_codes.py).
"""

from __future__ import annotations

import signal
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
EXIT_CHECK_FAILED: Final = 14
EXIT_AUDIT_BROKEN: Final = 15
EXIT_SIGHUP: Final = 128 + signal.SIGHUP
EXIT_SIGINT: Final = 128 + signal.SIGINT
EXIT_SIGTERM: Final = 128 + signal.SIGTERM

EXIT_CODES: Final[dict[int, str]] = {
    EXIT_OK: "success (queue: every card renewed or up to date)",
    EXIT_ERROR: "unexpected error",
    EXIT_USAGE: "usage or configuration error (queue: --pin-stdin is refused)",
    EXIT_CARD: "no reader, no card, card removed, or pcscd not running",
    EXIT_PIN: "wrong PIN or PIN blocked (change-pin/unblock: also the PUK, or new PINs that differ)",
    EXIT_NOT_DUE: "nothing due for renewal (status: some certificates are due)",
    EXIT_REFUSED: "refused: expired certificate or failed preflight (contact the RA), or an unwritable state directory "
                  "(unblock: not allowed by ui.allow_unlock)",
    EXIT_CA: "certificate authority refused or unreachable; card unchanged",
    EXIT_PARTIAL: "not every certificate was renewed; run renew again (it resumes) or contact the RA "
                  "(queue: some card was not renewed)",
    EXIT_CHECK_FAILED: "renew --check: at least one check failed (each with its next step); card unchanged",
    EXIT_AUDIT_BROKEN: "audit --verify: the audit log was edited or cut after it was written",
    EXIT_SIGHUP: "ended by SIGHUP (an SSH session dropped) after the current card step; the next run resumes",
    EXIT_SIGINT: "ended by SIGINT (Ctrl-C) after the current card step; the next run resumes",
    EXIT_SIGTERM: "ended by SIGTERM after the current card step; the next run resumes",
}
"""Each exit code's meaning in a few words: ``cardrenew --help`` lists them."""
