"""One run of the engine on a token whose keys can live side by side (issue 14): what
:meth:`card.renewal.engine.Renewal.run` does for a PIV card, keyed by each key's ``CKA_ID`` —
the state files and the token's own expiry, the journal (``interface = "pkcs11"``, one entry per due
key, named by its old ``CKA_ID``), PIN and write access, the CA's pinned certificate and the key
types, then per key :class:`card.renewal.beside.BesideSteps`, and the result.

Unlike the PIV order, a key the CA or the token refused does not stop the others: each key's old
key and certificate are untouched until its own new ones work. A key whose old certificate someone
else changed since an unfinished update is never touched (it is set aside, audited
``changed_elsewhere``). The run raises the refusal (exit 11 / 12) when nothing at all was renewed
and nothing is left to resume.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization

from card import words
from card.certificates import fingerprint, load_certificate_pem
from card.errors import CardError, CardRemovedError, NotSupportedError, OperationCancelled, StateFileError
from card.journal import FINAL_STEPS, Journal, JournalStep, SlotJournal
from card.piv import KeyType
from card.renewal.beside import BesideSteps
from card.renewal.model import CardSummary
from card.renewal.preflight import SlotPreflight
from card.renewal.results import EndedBeforeChange, RenewalRefused, RenewalResult, RenewalStep, SlotChangedError, SlotResult
from card.token import KeyRef

if TYPE_CHECKING:
    from card.renewal.engine import Renewal

logger = logging.getLogger(__name__)
PEM = serialization.Encoding.PEM


def new_key_journal(summary: CardSummary, renewal: Renewal) -> Journal:
    """The journal of a new side-by-side run: one entry per due key, named by its ``CKA_ID``.

    Raises:
        RenewalRefused: a certificate has expired, or nothing is due (nothing was changed).
    """
    settings = renewal.ctx.settings
    assert summary.card_id is not None
    if summary.expired:
        raise RenewalRefused(words.expired(words.slot_names(summary.expired)), next_step=f"Contact {settings.ra_contact}.")
    if not summary.due:
        raise RenewalRefused(words.up_to_date(summary.next_renewal_date(settings.window_days)), next_step="Nothing to do now.")
    journal = Journal(summary.card_id, interface="pkcs11")
    for status in summary.due:
        assert status.certificate is not None
        ref = status.key
        journal.slots[ref.hex] = SlotJournal(ref.hex, fingerprint(status.certificate),
                                             status.certificate.public_bytes(PEM).decode(), old_key_id=ref.hex,
                                             label=ref.label)
    return journal


class BesideRun:
    """The side-by-side run of one :class:`~card.renewal.engine.Renewal` (its token, context, signer,
    records and proof)."""

    def __init__(self, renewal: Renewal) -> None:
        self.r = renewal
        self.ctx = renewal.ctx

    def run(self) -> RenewalResult:
        """See :func:`card.renewal.engine.renew`."""
        r = self.r
        self.ctx.reporter.step(None, RenewalStep.PREFLIGHT)
        summary = r._card_summary()  # noqa: SLF001 - the engine's own preflight of the state files and the expiry
        journal = self._journal(summary)
        result = RenewalResult(journal.reference)
        r._log_in()  # noqa: SLF001 - PIN and write access, as the engine does them
        steps = BesideSteps(r.token, self.ctx, r.records, r.card_expiry)
        changed = steps.changed_keys(journal) if summary.pending_journal is not None else []
        self._preflight(journal, summary)
        results = self._results(journal, result)
        for name in changed:
            self._left_alone(journal, results[name], summary)
        self._run_keys(steps, journal, results, result)
        self._close(journal, result)
        return result

    def _journal(self, summary: CardSummary) -> Journal:
        """The token's unfinished journal, or a new one for the due keys (a finished one removed, a
        stale one set aside first)."""
        assert summary.card_id is not None
        if summary.finished_journal:
            try:
                self.ctx.journals.clear(summary.card_id)
            except StateFileError as exc:
                logger.warning("%s", exc)
        if summary.stale_journal is not None:
            try:
                self.ctx.journals.set_aside(summary.card_id, "changed")
            except OSError as exc:
                logger.warning("could not set the journal aside: %s", exc)
        return summary.pending_journal or new_key_journal(summary, self.r)

    def _preflight(self, journal: Journal, summary: CardSummary) -> None:
        """Before anything changes: the CA's pinned certificate, each new key's type (the token's
        mechanisms, the CA's list), and the journal saved.

        Raises:
            RenewalRefused, NotSupportedError, IssuerError, StateFileError: nothing was changed.
        """
        preflight = SlotPreflight(self.ctx, self.r.token, self.r.keys, self.r.signer, summary.card_key_types)
        preflight.check_issuer()
        for name, sj in journal.slots.items():
            if sj.step in FINAL_STEPS or not sj.old_certificate_pem:
                continue
            kt = self.ctx.settings.key_type or KeyType.of(load_certificate_pem(sj.old_certificate_pem).public_key())
            if summary.card_key_types is not None and kt not in summary.card_key_types:
                raise NotSupportedError(f"this token cannot generate {kt.name} keys (key {name}); nothing was changed")
            if kt.name not in self.ctx.issuer.supported_key_types():
                raise NotSupportedError(f"the certificate authority cannot certify {kt.name} keys; nothing was changed")
        self.ctx.journals.save(journal, changed=False)

    def _results(self, journal: Journal, result: RenewalResult) -> dict[str, SlotResult]:
        out: dict[str, SlotResult] = {}
        for name, sj in journal.slots.items():
            old = load_certificate_pem(sj.old_certificate_pem) if sj.old_certificate_pem else None
            out[name] = SlotResult(KeyRef(bytes.fromhex(name), sj.label or ""), sj.label or name, old)
            result.slots.append(out[name])
            self.ctx.reporter.step(out[name].slot, RenewalStep.DONE if sj.step == JournalStep.DONE else RenewalStep.PENDING)
        return out

    def _left_alone(self, journal: Journal, slot_result: SlotResult, summary: CardSummary) -> None:
        """A key someone else changed since the unfinished update: never touched, ended, audited."""
        assert isinstance(slot_result.slot, KeyRef)
        sj = journal.slots[slot_result.slot.hex]
        now = summary.journal_certificates.get(slot_result.slot.hex)
        error = SlotChangedError(
            f"key {slot_result.label} ({slot_result.slot.hex}) was changed by someone else after the unfinished update "
            f"{journal.reference} stopped (the RA re-issued it, or another tool renewed it); it was left alone")
        error.reference = journal.reference
        sj.step, sj.error, slot_result.error = JournalStep.ENDED, str(error), error
        self.r.records.audit(journal, slot_result.slot, slot_result.old_certificate, now, "changed_elsewhere", error.code)
        self.r.records.save_quietly(journal)
        self._report_failed(slot_result, error)

    def _run_keys(self, steps: BesideSteps, journal: Journal, results: dict[str, SlotResult],
                  result: RenewalResult) -> None:
        """Each key in turn; a refused key ends alone, an interrupted one stops the run (resumable)."""
        names = [n for n, sj in journal.slots.items() if sj.step != JournalStep.ENDED]
        for i, name in enumerate(names):
            sj, slot_result = journal.slots[name], results[name]
            if self.ctx.cancel.is_set() and sj.step != JournalStep.DONE:
                slot_result.error = RenewalRefused("cancelled before this certificate was started; nothing was changed for it")
                continue
            if not self._run_key(steps, journal, sj, slot_result, result):
                break
            if slot_result.renewed and i < len(names) - 1 and not self.ctx.between_slots(slot_result):
                self.ctx.cancel.set()

    def _run_key(self, steps: BesideSteps, journal: Journal, sj: SlotJournal, slot_result: SlotResult,
                 result: RenewalResult) -> bool:
        """One key; False when the run must stop (the journal keeps the key resumable)."""
        assert isinstance(slot_result.slot, KeyRef)
        try:
            slot_result.new_certificate = steps.renew_key(slot_result.slot, sj, journal)
            self.ctx.reporter.slot_finished(slot_result.slot, slot_result)
            self.r.records.flush(journal)
            if self.r.records.file_error is not None:
                raise self.r.records.file_error
            return True
        except (EndedBeforeChange, SlotChangedError) as ended:
            error = ended.error if isinstance(ended, EndedBeforeChange) else ended
            error.reference = journal.reference
            sj.step, sj.error, slot_result.error = JournalStep.ENDED, str(error), error
            outcome = "changed_elsewhere" if isinstance(error, SlotChangedError) else "refused"
            self.r.records.audit(journal, slot_result.slot, slot_result.old_certificate, None, outcome, error.code)
            self.r.records.save_quietly(journal)
            self._report_failed(slot_result, error)
            result.error = result.error or error
            return True
        except Exception as exc:  # noqa: BLE001 - the journal keeps the key resumable, whatever failed
            if not isinstance(exc, CardError):
                logger.exception("unexpected error while renewing key %s", slot_result.slot.hex)
                exc = CardError(f"internal error ({exc.__class__.__name__}); the update can be resumed")
            outcome = "interrupted" if isinstance(exc, CardRemovedError) else "failed"
            sj.error, slot_result.error = str(exc), exc
            self.r.records.audit(journal, slot_result.slot, slot_result.old_certificate, None, outcome, exc.code)
            self.r.records.save_quietly(journal)
            self._report_failed(slot_result, exc)
            result.error = result.error or exc
            return False

    def _report_failed(self, slot_result: SlotResult, exc: CardError) -> None:
        """The key's FAILED step (with why) and its outcome, as the PIV order reports a slot's."""
        assert isinstance(slot_result.slot, KeyRef)
        self.ctx.reporter.step(slot_result.slot, RenewalStep.FAILED, str(exc))
        self.ctx.reporter.slot_finished(slot_result.slot, slot_result)

    def _close(self, journal: Journal, result: RenewalResult) -> None:
        """Mark the keys not attempted; remove a finished journal or say it is kept; raise the refusal
        when nothing at all was renewed and nothing is left to resume (exit 11 / 12)."""
        for slot_result in result.slots:
            if slot_result.new_certificate is None and slot_result.error is None:
                slot_result.error = RenewalRefused("not attempted after the previous failure; nothing was changed for it")
        untouched = all(sj.step in (JournalStep.PLANNED, JournalStep.AUTHORISED, JournalStep.ENDED)
                        for sj in journal.slots.values())
        if self.ctx.cancel.is_set() and untouched and not journal.audit_pending and not any(
                r.new_certificate for r in result.slots):
            journal.slots = {n: sj for n, sj in journal.slots.items() if sj.step == JournalStep.ENDED}
            error = OperationCancelled("stopped before the token was changed; nothing was changed on your token")
            error.reference = journal.reference
            result.error = error
        if journal.finished and not journal.audit_pending:
            try:
                self.ctx.journals.clear(journal.card_id)
            except StateFileError as exc:
                logger.warning("%s", exc)
        else:
            result.journal_kept = True
        refused = [r.error for r in result.slots if r.error is not None and not isinstance(r.error, SlotChangedError)]
        if (refused and not result.journal_kept and not any(r.new_certificate for r in result.slots)
                and not isinstance(result.error, OperationCancelled)):
            raise refused[0]
