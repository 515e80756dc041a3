"""The engine's journal and audit writes during a run (DESIGN §8): a file error never ends a run as
"unexpected" — before the card changed it refuses the run, after it the slot in hand is finished
and the run stops, and on an error path it is logged and the error being reported stands."""

from __future__ import annotations

import logging

from cryptography import x509

from card.errors import StateFileError
from card.journal import Journal, prepare_state_files
from card.token import KeyRef
from card.renewal.context import RenewalContext
from card.renewal.model import CardSummary

logger = logging.getLogger(__name__)


class RunRecords:
    """Journal saves and audit records of one renewal run."""

    def __init__(self, ctx: RenewalContext) -> None:
        self.ctx = ctx
        self.file_error: StateFileError | None = None
        """A journal save after GENERATE that went to the fallback directory: the run stops after this slot."""

    def prepare_state_files(self, summary: CardSummary) -> None:
        """Preflight of the state directory, journal and audit log, and the audit records an
        earlier run could not write, before anything is asked of the card or the CA.

        Raises:
            StateFileError: nothing was changed (exit 11).
        """
        assert summary.card_id is not None
        prepare_state_files(self.ctx.journals, self.ctx.audit, summary.card_id)
        if summary.pending_journal is not None:
            summary.pending_journal.audit_pending.clear()  # written by prepare_state_files just now

    def save_progress(self, journal: Journal) -> None:
        """Journal a step taken after GENERATE. When the state directory cannot take it but the
        journal was kept in the fallback directory, the slot in hand is finished (the card must
        not be left with a new key and the old certificate) and the run stops after it.

        Raises:
            StateFileError: the journal could not be kept anywhere: stop here (the journal on
                disk still describes a state the next run resumes from).
        """
        try:
            self.ctx.journals.save(journal)
        except StateFileError as exc:
            if exc.kept_at is None:
                raise
            logger.warning("%s", exc)
            self.file_error = self.file_error or exc

    def save_quietly(self, journal: Journal) -> None:
        """Save the journal on an error path: a file error is logged, never raised (the error being
        reported is what the user must see)."""
        try:
            self.ctx.journals.save(journal)
        except StateFileError as exc:  # the error being reported is what the user must see
            logger.warning("could not save the journal: %s", exc)

    def audit_record(self, journal: Journal, ref: KeyRef, old: x509.Certificate | None, new: x509.Certificate | None,
                     outcome: str, error_code: str | None) -> dict[str, object]:
        """An audit record (JSON-lines fields, DESIGN §8) of the key at ``ref`` (``slot``: its journal name): old and new serial and expiry, outcome, error code."""
        return self.ctx.audit.record(
            event="certificate", reference=journal.reference, card_guid=journal.card_id, holder=self.ctx.holder,
            slot=ref.hex, outcome=outcome, error_code=error_code,
            old_serial=f"{old.serial_number:X}" if old else None,
            old_not_after=old.not_valid_after_utc.isoformat() if old else None,
            new_serial=f"{new.serial_number:X}" if new else None,
            new_not_after=new.not_valid_after_utc.isoformat() if new else None,
        )

    def audit(self, journal: Journal, ref: KeyRef, old: x509.Certificate | None, new: x509.Certificate | None,
              outcome: str, error_code: str | None) -> None:
        """Record an event of this renewal; never raises. A record the log cannot take stays in
        ``journal.audit_pending`` (the caller saves the journal) and is written by the next run."""
        journal.audit_pending.append(self.audit_record(journal, ref, old, new, outcome, error_code))
        try:
            self.flush(journal)
        except StateFileError as exc:
            logger.warning("audit record kept in the journal for the next run: %s", exc)

    def flush(self, journal: Journal) -> None:
        """Append the journal's pending audit records (made in this run: not in the log yet).

        Raises:
            StateFileError: the log could not be written; the records stay pending.
        """
        while journal.audit_pending:
            self.ctx.audit.append(journal.audit_pending[0])
            journal.audit_pending.pop(0)
