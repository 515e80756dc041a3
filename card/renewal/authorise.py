"""Authorise (DESIGN §3 step 2): every due slot is authorised by the issuer while its old key still
exists — ``issuer.authorize_renewal(slot, old_certificate, old_key)`` gives a one-time grant, and
the grants are journalled before anything destructive happens."""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography import x509

from card.enrollment.base import IssuerRejected, RenewalGrant
from card.errors import CardError, CardRemovedError, StateFileError
from card.journal import Journal, JournalStep, JournalStore, SlotJournal
from card.piv import Slot
from card.renewal.context import RenewalContext, ask_ca
from card.renewal.plan import SlotPlan
from card.renewal.results import RenewalStep, SlotKeyMismatchError
from card.renewal.signer import CardSigner
from card.token import KeyRef

logger = logging.getLogger(__name__)


def set_aside_journals(journals: JournalStore, card_id: str) -> list[Path]:
    """This card's journals set aside as corrupt or changed (state and fallback directory), oldest first."""
    name = journals.file_name(card_id)
    found: list[Path] = []
    for directory in (journals.directory, journals.fallback):
        if directory is None:
            continue
        try:
            found += [*directory.glob(name + ".corrupt-*"), *directory.glob(name + ".set-aside-*")]
        except OSError:
            continue
    try:
        return sorted(found, key=lambda p: p.stat().st_mtime)
    except OSError:
        return []


class Authoriser:
    """Asks the issuer for the grants of one run, the old keys proving possession through the signer."""

    def __init__(self, ctx: RenewalContext, signer: CardSigner) -> None:
        self.ctx = ctx
        self.signer = signer
        self.ended: dict[KeyRef, CardError] = {}
        """Slots the CA refused at authorisation on a resume, before anything in them changed."""

    def grant_for(self, ref: KeyRef, old: x509.Certificate) -> RenewalGrant:
        """The issuer's grant for the key at ``ref``, the old key signing the issuer's challenge (the
        token sends what a PIN-always key needs first: VERIFY for 9C).

        Raises:
            IssuerError (IssuerRejected, IssuerUnavailable after the retries), OperationCancelled, CardError.
        """
        return ask_ca(self.ctx, lambda: self.ctx.issuer.authorize_renewal(ref.hex, old,
                                                                          lambda m: self.signer.sign(ref, m)))

    def authorise(self, journal: Journal, plan: list[SlotPlan]) -> None:
        """Authorise every slot of ``plan`` whose old key is intact and journal the grants together.

        PIN-always 9C goes first, so that its proof of possession follows the preflight VERIFY
        directly (the other slots need only a verified PIN). A slot already authorised by an
        interrupted run is authorised afresh: GENERATE never started, so its old key is intact, and
        the old grant may have expired at the RA.

        Raises:
            IssuerRejected: the CA refused and no slot of the journal is in progress (the journal
                is removed: no resume loops, issue 11 item 2).
            SlotKeyMismatchError: so refused because the slot's key no longer matches its
                certificate (break-it finding 8): the run stops before any other slot is touched.
            StateFileError: the journal could not be saved (nothing changed on the card yet).
        """
        for entry in sorted(plan, key=lambda e: e.slot != Slot.SIGNATURE):
            sj = entry.entry
            if sj.step in (JournalStep.PLANNED, JournalStep.AUTHORISED) and entry.old is not None:
                self._authorise_slot(journal, entry.ref, entry.old, sj)
        self.ctx.journals.save(journal, changed=False)  # StateFileError: nothing changed on the card yet

    def _authorise_slot(self, journal: Journal, ref: KeyRef, old: x509.Certificate, sj: SlotJournal) -> None:
        self.ctx.reporter.step(ref.piv_slot, RenewalStep.AUTHORISING)
        try:
            grant = self.grant_for(ref, old)
        except IssuerRejected as exc:
            # Refused before anything changed in this slot in this run. Never leave a journal that
            # would ask again forever (issue 11 item 2); finish what is in progress.
            stops = not any(other.in_progress for other in journal.slots.values())
            mismatch = self._key_mismatch(journal, ref, old, exc, stops=stops)  # not the CA's fault: say so
            if stops:
                try:
                    self.ctx.journals.clear(journal.card_id)
                except StateFileError as file_error:
                    logger.warning("%s", file_error)
                if mismatch is not None:  # stop before any other slot is touched (3a2259d)
                    raise mismatch from exc
                raise
            sj.step, sj.error = JournalStep.ENDED, str(mismatch or exc)
            self.ended[ref] = mismatch or exc
            return
        sj.grant = grant.to_dict()
        sj.step = JournalStep.AUTHORISED

    def _key_mismatch(self, journal: Journal, ref: KeyRef, old: x509.Certificate, refusal: IssuerRejected, *,
                      stops: bool) -> SlotKeyMismatchError | None:
        """After the CA refused ``slot``'s authorisation: when the slot's key does not match ``old`` (a
        test signature, made only on this failure path), the error that says so — an interrupted
        update, not a CA refusal — naming a set-aside journal of this card, if any. None when the key
        matches (the CA's refusal stands) or the card cannot tell. ``stops``: the run stops here (no
        slot of the journal is in progress), so no other slot is touched.

        Raises:
            CardRemovedError: the card went away during the test signature.
        """
        try:
            if self.signer.slot_key_is(ref, [old.public_key()]) == 0:
                return None
        except CardRemovedError:
            raise
        except CardError:
            return None
        aside = set_aside_journals(self.ctx.journals, journal.card_id)
        where = f"; the set-aside journal of that update is at {aside[-1]}" if aside else ""
        error = SlotKeyMismatchError(
            f"slot {ref.hex}'s key does not match its certificate: an earlier update was interrupted after the "
            f"new key was made, so the certificate authority refused the proof of possession ({refusal}). This "
            f"certificate cannot be renewed here; it was not changed in this run"
            f"{', and no other certificate on the card was touched' if stops else ''}{where}",
            next_step=f"Contact {self.ctx.settings.ra_contact} with reference {journal.reference}: slot {ref.hex} "
                      "must be re-issued" + (" (give them the set-aside journal too)." if aside else "."))
        error.reference = journal.reference
        return error

    def authorise_again(self, journal: Journal, ref: KeyRef, old: x509.Certificate, sj: SlotJournal) -> None:
        """On a resume whose slot still holds its old key: start the slot over with a fresh grant
        (journalled at once; whatever the old run generated or was issued is forgotten)."""
        sj.step = JournalStep.PLANNED  # the old key is intact: start this slot over
        self.ctx.reporter.step(ref.piv_slot, RenewalStep.AUTHORISING)
        grant = self.grant_for(ref, old)
        sj.grant, sj.step = grant.to_dict(), JournalStep.AUTHORISED
        sj.public_key_pem = sj.csr_pem = sj.certificate_pem = None
        self.ctx.journals.save(journal)
