"""The renewal engine (DESIGN §3): preflight, authorise every due slot while the old keys
exist, then per slot generate → CSR signed on the card → issue → verify → PUT DATA → read back
→ test signature, journalling each step; and resume from the journal.

Synchronous; runs on the card worker thread. It never logs or stores the PIN or the
management key; it never writes a certificate that does not match the key in the slot.

It works on a :class:`~card.token.Token` (issue 14): our PIV card over APDUs
(:class:`~card.token.piv.PivToken`) or a PKCS#11 module; keys are :class:`~card.token.KeyRef` whose
``hex`` names them in the journal ("9A" for a PIV slot, as before).

This module holds the run's order; the package's other modules hold its parts: :mod:`.preflight`,
:mod:`.authorise`, :mod:`.steps` (one key in the PIV order; :meth:`Renewal._key_steps` is where a
side-by-side token gets its own steps), :mod:`.resume` (the resume decision), :mod:`.signer` (the
token's keys: key types, test signatures), :mod:`.keys` (journal names and slots → KeyRef),
:mod:`.admin` (the PIV token's management key from the settings) and :mod:`.records` (journal and
audit writes).
"""

from __future__ import annotations

import datetime as dt
import logging

from cryptography import x509

from card.errors import CardError, CardRemovedError, OperationCancelled, StateFileError
from card.journal import Journal, JournalStep
from card.piv import KeyType, PivSession, Slot
from card.renewal.admin import as_token
from card.renewal.authorise import Authoriser
from card.renewal.beside import BesideSteps
from card.renewal.beside_run import BesideRun
from card.renewal.context import RenewalContext
from card.renewal.keys import TokenKeys
from card.renewal.model import CardSummary, SlotState, SlotStatus
from card.renewal.plan import SlotPlan
from card.renewal.preflight import SlotPreflight, new_journal, refuse_expired_card
from card.renewal.reading import read_card
from card.renewal.records import RunRecords
from card.renewal.results import EndedBeforeChange, RenewalRefused, RenewalResult, RenewalStep, SlotResult
from card.renewal.resume import JournalProof
from card.renewal.salvage import Salvage
from card.renewal.signer import CardSigner
from card.renewal.steps import KeySteps, SlotSteps
from card.secret import Secret, require_secret
from card.token import Token

logger = logging.getLogger(__name__)


class Renewal:
    """One run of the engine on one card (state kept across the steps of that run).

    Args:
        summary: the card as the caller read it in this same card transaction (None: read it here).
    """

    def __init__(self, token: Token, ctx: RenewalContext, pin: Secret, summary: CardSummary | None = None) -> None:
        self.token = token
        self.keys = TokenKeys(token)
        self.ctx = ctx
        self.signer = CardSigner(token, pin)
        self.records = RunRecords(ctx)
        self.authoriser = Authoriser(ctx, self.signer)
        self.proof = JournalProof(ctx, self.keys, self.signer, self.records)
        self._summary = summary
        self.card_key_types: set[KeyType] | None = None
        self.card_expiry: dt.date | None = None
        """The card's CHUID expiration date: no certificate may be valid past it."""
        self._refused_before_change: CardError | None = None

    # -- the run -------------------------------------------------------------------------
    def run(self) -> RenewalResult:
        """Preflight, authorise, renew slot by slot; see :func:`renew` for what is raised and returned."""
        if self.token.info.side_by_side:  # issue 14: the new key beside the old one, keyed by CKA_ID
            return BesideRun(self).run()
        self.ctx.reporter.step(None, RenewalStep.PREFLIGHT)
        summary = self._card_summary()
        journal, by_slot = self._journal_for(summary)
        result = RenewalResult(journal.reference)
        self._log_in()
        # on a resume: the certificate each journalled slot held when this run read the card
        on_card = dict(summary.journal_certificates) if summary.pending_journal is not None else {}
        steps = self._key_steps(on_card)
        if summary.pending_journal is not None and isinstance(steps, BesideSteps):  # each key proved by beside's rule
            changed = steps.changed_keys(journal)
            if changed:
                self.proof.set_aside(journal, changed, summary.journal_certificates, by_slot, goes_on=True)
        elif summary.pending_journal is not None:
            self.proof.prove(journal, summary.journal_certificates, by_slot)
        else:  # a set-aside journal may hold the certificate for a key its update left in a slot
            Salvage(self.ctx, self.keys, self.signer).salvage(journal, self.card_expiry)
        plan = self._prepare_or_refuse(journal, by_slot, result)
        self._run_slots(steps, journal, plan, result)
        result.slots.extend(self.proof.changed)
        for status in summary.slots:  # F15: a slot with junk is reported, never silently skipped
            if status.state is SlotState.UNREADABLE and status.slot.hex not in journal.slots:
                result.slots.append(SlotResult(status.slot, status.setting.label, None, None, RenewalRefused(
                    f"holds an unreadable object ({status.error}); it cannot be renewed here",
                    next_step=f"Contact {self.ctx.settings.ra_contact}: the slot must be re-issued.")))
        return result

    def _key_steps(self, on_card: dict[str, x509.Certificate | None]) -> KeySteps:
        """The per-key steps for this token: the PIV order (DESIGN §3: the new key replaces the old one),
        or, where keys can live side by side, the new key beside the old one (issue 14)."""
        if self.token.info.side_by_side:
            return BesideSteps(self.token, self.ctx, self.records, self.card_expiry)
        return SlotSteps(self.token, self.keys, self.ctx, self.signer, self.records, self.authoriser,
                         self.card_expiry, on_card)

    def _card_summary(self) -> CardSummary:
        """The card as read in this transaction, after the state files and the card's own expiry passed."""
        ctx, token, settings = self.ctx, self.token, self.ctx.settings
        summary = self._summary
        if summary is None:
            summary = read_card(token, settings, now=ctx.now(), journals=ctx.journals, reader=token.info.reader,
                                pin_retries=False, key_metadata=False)
        if summary.card_id is None:
            raise RenewalRefused("the card holds no certificate and no CHUID; it cannot be renewed here",
                                 next_step=f"Contact {settings.ra_contact}.")
        ctx.card = summary  # names the card in the run's audit records (card.renewal.attempts)
        self.records.prepare_state_files(summary)
        self.card_key_types = summary.card_key_types
        self.card_expiry = summary.card_expiry
        refuse_expired_card(summary, settings, ctx.now)
        return summary

    def _journal_for(self, summary: CardSummary) -> tuple[Journal, dict[Slot, SlotStatus]]:
        """The card's unfinished journal, or a new one for the due slots (refusing when nothing is due);
        a finished journal is removed and a stale one set aside first."""
        assert summary.card_id is not None
        by_slot = {s.slot: s for s in summary.slots}
        if summary.finished_journal:
            try:
                self.ctx.journals.clear(summary.card_id)  # every slot done: only the removal was interrupted
            except StateFileError as exc:
                logger.warning("%s", exc)
        if summary.stale_journal is not None:
            self.proof.set_aside(summary.stale_journal, list(summary.stale_journal.slots),
                                 summary.journal_certificates, by_slot)
        journal = summary.pending_journal
        if journal is None:
            journal = new_journal(summary, self.ctx.settings, self.ctx.now(), self.proof.changed)
        return journal, by_slot

    def _log_in(self) -> None:
        """Preflight continued: PIN and write access (PIV: the management key). Write access goes
        first, so that the PIN's VERIFY is the command right before the first 9C signature (F08:
        management-key work first, then VERIFY immediately followed by the signature) and also serves
        as its PIN-always VERIFY. A PIN-protected management key (DESIGN §5) is read with the PIN
        verified, so that source keeps the PIN first."""
        if "pin-protected" in self.ctx.settings.sources:
            self.signer.log_in()
            self.token.log_in_admin()
        else:
            self.token.log_in_admin()
            self.signer.log_in()

    def _prepare_or_refuse(self, journal: Journal, by_slot: dict[Slot, SlotStatus],
                           result: RenewalResult) -> list[SlotPlan]:
        """:meth:`_prepare`; a refusal (nothing changed) gets the journal's reference and an audit record."""
        try:
            return self._prepare(journal, by_slot, result)
        except CardRemovedError:
            raise
        except CardError as exc:  # refused before anything was changed: give the RA a reference
            exc.reference = journal.reference
            self.ctx.audit.write_quietly(event="renewal", reference=journal.reference, card_guid=journal.card_id,
                                         holder=self.ctx.holder, slot=None, outcome="refused", error_code=exc.code)  # kept for the next run if need be
            raise

    def _prepare(self, journal: Journal, by_slot: dict[Slot, SlotStatus], result: RenewalResult) -> list[SlotPlan]:
        """Preflight against the CA and authorise every due slot while the old keys exist."""
        preflight = SlotPreflight(self.ctx, self.token, self.keys, self.signer, self.card_key_types)
        preflight.check_issuer()
        plan = preflight.plan(journal, by_slot)
        preflight.check_request_signers(plan, by_slot)
        for entry in plan:
            result.slots.append(SlotResult(entry.slot, entry.setting.label, entry.old))
        for entry in plan:
            self.ctx.reporter.step(entry.slot, RenewalStep.DONE if entry.entry.step == JournalStep.DONE else RenewalStep.PENDING)
        self.authoriser.authorise(journal, plan)
        return plan

    # -- the slots, in order; stop at the first failure ------------------------------------
    def _run_slots(self, steps: KeySteps, journal: Journal, plan: list[SlotPlan], result: RenewalResult) -> None:
        """Renew the authorised slots in order; stop at the first failure."""
        for entry, slot_result in zip(plan, result.slots, strict=True):
            if self.ctx.cancel.is_set():
                slot_result.error = RenewalRefused("cancelled before this certificate was started; nothing was changed in this slot")
                continue
            if entry.ref in self.authoriser.ended:
                slot_result.error = self.authoriser.ended[entry.ref]
                self.records.audit(journal, entry.ref, entry.old, None, "refused", slot_result.error.code)
                self._report_failed(entry.slot, slot_result, slot_result.error)
                continue
            if not self._run_slot(steps, journal, entry, slot_result, result):
                break
        self._close(journal, result)

    def _run_slot(self, steps: KeySteps, journal: Journal, entry: SlotPlan, slot_result: SlotResult,
                  result: RenewalResult) -> bool:
        """One slot; whatever fails is reported in ``slot_result`` and the journal keeps the slot
        resumable. Returns False when the run must stop (never destroy another slot's working key
        after a failure)."""
        try:
            return self._renew_one(steps, journal, entry, slot_result, result)
        except EndedBeforeChange as ended:
            self._ended_before_change(journal, entry, slot_result, ended.error)
            result.error = result.error or ended.error
        except CardRemovedError as exc:  # nothing more can be done without the card
            self._slot_failed(journal, entry, slot_result, exc, "interrupted")
            result.error = exc
        except Exception as exc:  # noqa: BLE001 - the journal keeps the slot resumable, whatever failed
            if not isinstance(exc, CardError):
                logger.exception("unexpected error while renewing slot %s", entry.slot.hex)
                exc = CardError(f"internal error ({exc.__class__.__name__}); the update can be resumed")
            self._slot_failed(journal, entry, slot_result, exc, "failed")
            result.error = result.error or exc
        return False

    def _renew_one(self, steps: KeySteps, journal: Journal, entry: SlotPlan, slot_result: SlotResult,
                   result: RenewalResult) -> bool:
        """Renew one slot, then flush its audit record and ask whether to go on (the portal's *Next*)."""
        done_before = entry.entry.step == JournalStep.DONE  # renewed by an earlier, interrupted run
        slot_result.new_certificate = steps.renew_slot(entry.ref, entry.entry, journal)
        self.ctx.reporter.slot_finished(entry.slot, slot_result)
        if done_before:
            return True  # already audited and confirmed by the run that renewed it
        # The "renewed" record went into the journal with its last save (see SlotSteps.write_and_check):
        # append it now; if the log cannot be written it stays there for the next run, and
        # no further destructive step is taken while the audit log cannot be written.
        try:
            self.records.flush(journal)
        except StateFileError as exc:
            self.records.save_quietly(journal)
            result.error = exc
            return False
        if self.records.file_error is not None:  # the journal went to the fallback directory
            result.error = self.records.file_error
            return False
        if slot_result is not result.slots[-1] and not self.ctx.between_slots(slot_result):
            self.ctx.cancel.set()
        return True

    def _ended_before_change(self, journal: Journal, entry: SlotPlan, slot_result: SlotResult, exc: CardError) -> None:
        """The card refused before anything in this slot changed (proved by the old key's test
        signature): end the journal for it and for the slots not started, whose old keys are intact
        too, so that no later run "resumes" into the same refusal (issue 11 item 2)."""
        self._refused_before_change = exc
        exc.reference = journal.reference
        entry.entry.step, entry.entry.error = JournalStep.ENDED, str(exc)
        slot_result.error = exc
        for other in journal.slots.values():
            if other.step in (JournalStep.PLANNED, JournalStep.AUTHORISED):
                other.step = JournalStep.ENDED
        self.records.save_quietly(journal)
        self.records.audit(journal, entry.ref, entry.old, None, "refused", exc.code)
        self._report_failed(entry.slot, slot_result, exc)

    def _slot_failed(self, journal: Journal, entry: SlotPlan, slot_result: SlotResult, exc: CardError,
                     outcome: str) -> None:
        """Record a failed slot (journal kept resumable; a file error here is the one already reported)."""
        entry.entry.error = str(exc)
        slot_result.error = exc
        self.records.audit(journal, entry.ref, entry.old, None, outcome, exc.code)
        self.records.save_quietly(journal)
        self._report_failed(entry.slot, slot_result, exc)

    def _report_failed(self, slot: Slot, slot_result: SlotResult, exc: CardError) -> None:
        self.ctx.reporter.step(slot, RenewalStep.FAILED, str(exc))
        self.ctx.reporter.slot_finished(slot, slot_result)

    def _close(self, journal: Journal, result: RenewalResult) -> None:
        """Mark the slots not attempted, remove a finished journal (or say it is kept), and raise the
        refusal when nothing at all changed on the card (exit 11 / 12, never "run renew again")."""
        for slot_result in result.slots:
            if slot_result.new_certificate is None and slot_result.error is None:
                slot_result.error = RenewalRefused("not attempted after the previous failure; nothing was changed in this slot")
        if self._cancelled_before_change(journal, result):
            return
        if journal.finished and not journal.audit_pending:
            try:
                self.ctx.journals.clear(journal.card_id)
            except StateFileError as exc:  # finished: never resumed; the next run's preflight removes it
                logger.warning("%s", exc)
        else:
            result.journal_kept = True
        refused = self._refused_before_change
        if (refused is not None and not result.journal_kept and not self.proof.changed
                and not any(r.new_certificate is not None for r in result.slots)):
            raise refused


    def _cancelled_before_change(self, journal: Journal, result: RenewalResult) -> bool:
        """Stopped (SIGTERM/SIGHUP/SIGINT, the app closing) after the CA granted but before anything on the
        card changed, in this run or an earlier one: the journal holds only grants, which a later run asks
        for afresh anyway (:meth:`Authoriser.authorise`), so it is removed and ``result.error`` is
        :class:`OperationCancelled` with ``journal_kept`` False — ``renew`` exits 128 + signal,
        ``CANCELLED``, as the README promises (break-it finding 8). A journal that cannot be removed is
        kept (it resumes harmlessly) and the run reports as before.

        Returns:
            True when the run ends so (the journal removed).
        """
        if not self.ctx.cancel.is_set() or self.proof.changed or journal.audit_pending:
            return False
        if any(r.new_certificate is not None for r in result.slots):
            return False
        if not all(sj.step in (JournalStep.PLANNED, JournalStep.AUTHORISED) for sj in journal.slots.values()):
            return False
        try:
            self.ctx.journals.clear(journal.card_id)
        except StateFileError as exc:
            logger.warning("%s", exc)
            return False
        error = OperationCancelled("stopped before the card was changed; nothing was changed on your card")
        error.reference = journal.reference
        result.error, result.journal_kept = error, False
        return True


def renew(card: Token | PivSession, ctx: RenewalContext, pin: Secret, *,
          summary: CardSummary | None = None) -> RenewalResult:
    """Renew every due slot of the card, or resume the card's unfinished journal.

    Args:
        card: the token (a bare PivSession is taken as ``card.renewal.admin.piv_token(card, ctx.settings)``).
            A token whose keys can live side by side (``info.side_by_side``) is renewed by
            :mod:`card.renewal.beside`'s steps; any other in the PIV order (DESIGN §3).
        pin: the PIN entered for this renewal, as a :class:`~card.secret.Secret`: held in memory for
            the run, never stored, and wiped when the run ends whatever the outcome (pass a new
            Secret for each run).
        summary: what :func:`read_card` returned for this card *in the same card transaction*
            (e.g. the caller's update check; with ``journals=ctx.journals``): the engine then
            does not read the card again. Never pass a summary from an earlier transaction:
            another program may have changed the card in between. None: the engine reads the card.

    Returns:
        The per-slot outcome. Errors after the first destructive step are reported per slot
        in the result (the journal is kept for resume); errors before it are raised.

    Raises:
        RenewalRefused: nothing due, a certificate expired, preflight failed (nothing changed).
        InvalidPinError, PinBlockedError, ManagementKeyError, IssuerError, CardRemovedError:
            before anything destructive happened.
        TypeError: ``pin`` is not a Secret.
    """
    require_secret(pin, "PIN")
    try:
        return Renewal(as_token(card, ctx.settings), ctx, pin, summary).run()
    finally:
        pin.wipe()


