"""Authorise (DESIGN §3 step 2): every due slot is authorised by the issuer while its old key still
exists — ``issuer.authorize_renewal(slot, old_certificate, old_key)`` gives a one-time grant, and
the grants are journalled before anything destructive happens."""

from __future__ import annotations

import logging

from cryptography import x509

from card.enrollment.base import IssuerRejected, RenewalGrant
from card.errors import CardError, StateFileError
from card.journal import Journal, JournalStep, SlotJournal
from card.piv import Slot
from card.renewal.context import RenewalContext, ask_ca
from card.renewal.plan import SlotPlan
from card.renewal.results import RenewalStep
from card.renewal.signer import CardSigner

logger = logging.getLogger(__name__)


class Authoriser:
    """Asks the issuer for the grants of one run, the old keys proving possession through the signer."""

    def __init__(self, ctx: RenewalContext, signer: CardSigner) -> None:
        self.ctx = ctx
        self.signer = signer
        self.ended: dict[Slot, CardError] = {}
        """Slots the CA refused at authorisation on a resume, before anything in them changed."""

    def grant_for(self, slot: Slot, old: x509.Certificate) -> RenewalGrant:
        """The issuer's grant for ``slot``, the old key signing the issuer's challenge (VERIFY first for 9C).

        Raises:
            IssuerError (IssuerRejected, IssuerUnavailable after the retries), OperationCancelled, CardError.
        """
        return ask_ca(self.ctx, lambda: self.ctx.issuer.authorize_renewal(slot.hex, old,
                                                                          lambda m: self.signer.sign(slot, m)))

    def authorise(self, journal: Journal, plan: list[SlotPlan]) -> None:
        """Authorise every slot of ``plan`` whose old key is intact and journal the grants together.

        PIN-always 9C goes first, so that its proof of possession follows the preflight VERIFY
        directly (the other slots need only a verified PIN). A slot already authorised by an
        interrupted run is authorised afresh: GENERATE never started, so its old key is intact, and
        the old grant may have expired at the RA.

        Raises:
            IssuerRejected: the CA refused and no slot of the journal is in progress (the journal
                is removed: no resume loops, issue 11 item 2).
            StateFileError: the journal could not be saved (nothing changed on the card yet).
        """
        for entry in sorted(plan, key=lambda e: e.slot != Slot.SIGNATURE):
            sj = entry.entry
            if sj.step in (JournalStep.PLANNED, JournalStep.AUTHORISED) and entry.old is not None:
                self._authorise_slot(journal, entry.slot, entry.old, sj)
        self.ctx.journals.save(journal, changed=False)  # StateFileError: nothing changed on the card yet

    def _authorise_slot(self, journal: Journal, slot: Slot, old: x509.Certificate, sj: SlotJournal) -> None:
        self.ctx.reporter.step(slot, RenewalStep.AUTHORISING)
        try:
            grant = self.grant_for(slot, old)
        except IssuerRejected as exc:
            # Refused while the old key is intact: nothing changed in this slot. Never leave a
            # journal that would ask again forever (issue 11 item 2); finish what is in progress.
            if not any(other.in_progress for other in journal.slots.values()):
                try:
                    self.ctx.journals.clear(journal.card_id)
                except StateFileError as file_error:
                    logger.warning("%s", file_error)
                raise
            sj.step, sj.error = JournalStep.ENDED, str(exc)
            self.ended[slot] = exc
            return
        sj.grant = grant.to_dict()
        sj.step = JournalStep.AUTHORISED

    def authorise_again(self, journal: Journal, slot: Slot, old: x509.Certificate, sj: SlotJournal) -> None:
        """On a resume whose slot still holds its old key: start the slot over with a fresh grant
        (journalled at once; whatever the old run generated or was issued is forgotten)."""
        sj.step = JournalStep.PLANNED  # the old key is intact: start this slot over
        self.ctx.reporter.step(slot, RenewalStep.AUTHORISING)
        grant = self.grant_for(slot, old)
        sj.grant, sj.step = grant.to_dict(), JournalStep.AUTHORISED
        sj.public_key_pem = sj.csr_pem = sj.certificate_pem = None
        self.ctx.journals.save(journal)
