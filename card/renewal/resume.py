"""Resume (DESIGN §3.4): before any destructive step of an unfinished update, prove the card is as
the journal left it — by each slot's certificate fingerprint and a test signature of its key — and
decide per slot: as journalled (continue; an issued certificate is written without asking the CA
again), renewed already (finish), or changed by someone else (left alone, the journal set aside).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from card.certificates import fingerprint, key_matches, public_key_der
from card.journal import FINAL_STEPS, Journal, SlotJournal
from card.piv import Slot
from card.renewal.context import RenewalContext
from card.renewal.keys import TokenKeys
from card.renewal.model import SlotStatus, holds_generated_key
from card.renewal.plan import journal_old_certificate
from card.renewal.records import RunRecords
from card.renewal.results import RenewalStep, SlotChangedError, SlotResult
from card.renewal.signer import CardSigner
from card.token import KeyRef

logger = logging.getLogger(__name__)


class Resume(enum.Enum):
    """What a resumed slot holds, learnt by a test signature against the keys the journal knows."""

    WRITE = "the key of the issued certificate: write it (as journalled) or finish (renewed already)"
    ISSUE = "the key this update generated, no certificate yet: ask the CA with the grant"
    START_OVER = "the old key, intact: authorise again and start the slot over"
    GENERATE = "a key nobody knows (GENERATE was interrupted): generate again with the grant"
    GONE = "a key nobody knows and no grant is left: the slot cannot be finished here"


@dataclass(frozen=True)
class ResumeDecision:
    """:class:`Resume` plus what it acts on: the key the slot holds (WRITE, ISSUE) and the
    certificate to write (WRITE) or the old certificate to authorise with again (START_OVER)."""

    action: Resume
    key: PublicKeyTypes | None = None
    certificate: x509.Certificate | None = None


def decide_resume(signer: CardSigner, ref: KeyRef, sj: SlotJournal) -> ResumeDecision:
    """Learn what the key at ``ref`` is now (one test signature per key type in play) and decide.

    Raises:
        RenewalRefused: the journal does not hold the certificate being renewed.
        CardError: the card failed the test signature.
    """
    new_cert = x509.load_pem_x509_certificate(sj.certificate_pem.encode()) if sj.certificate_pem else None
    new_key = serialization.load_pem_public_key(sj.public_key_pem.encode()) if sj.public_key_pem else None
    candidates: list[PublicKeyTypes] = []
    if new_cert is not None:
        candidates.append(new_cert.public_key())
    if new_key is not None:
        candidates.append(new_key)
    journal_old = journal_old_certificate(sj)
    candidates.append(journal_old.public_key())
    found = signer.slot_key_is(ref, candidates) if candidates else None
    current = candidates[found] if found is not None else None
    if current is not None and new_cert is not None and key_matches(new_cert, current):
        return ResumeDecision(Resume.WRITE, current, new_cert)
    if current is not None and new_key is not None and public_key_der(current) == public_key_der(new_key):
        return ResumeDecision(Resume.ISSUE, new_key)
    if current is not None and key_matches(journal_old, current):
        return ResumeDecision(Resume.START_OVER, certificate=journal_old)
    if sj.grant is None:
        return ResumeDecision(Resume.GONE)
    return ResumeDecision(Resume.GENERATE)


class JournalProof:
    """Proves an unfinished journal against the card and sets aside what someone else changed."""

    def __init__(self, ctx: RenewalContext, keys: TokenKeys, signer: CardSigner, records: RunRecords) -> None:
        self.ctx = ctx
        self.keys = keys
        self.signer = signer
        self.records = records
        self.changed: list[SlotResult] = []
        """Slots of the journal that someone else changed: left alone, reported after the others."""

    def prove(self, journal: Journal, current: dict[str, x509.Certificate | None],
              by_slot: dict[Slot, SlotStatus]) -> None:
        """Before anything destructive on a resume: every unfinished slot must hold a certificate the
        journal expects (the old one, or the one issued); a slot whose write may have been torn (no
        readable certificate, or a certificate for the key the journal generated: libykcs11's
        placeholder) must hold the key the journal generated (a test signature). Any other
        slot was changed by someone else: it is left alone and the journal file is set aside (kept,
        renamed), the remaining slots continuing under the same reference.

        The test signature that tells "as journalled" (old key, or the generated one) from "already
        renewed" is made per slot by :func:`decide_resume`, right before its first step."""
        changed: list[str] = []
        for name, sj in journal.slots.items():
            if sj.step in FINAL_STEPS:
                continue
            cert = current.get(name)
            if cert is not None and fingerprint(cert) in sj.expected_fingerprints():
                continue
            if (cert is None or holds_generated_key(sj, cert)) and sj.in_progress and sj.public_key_pem:
                ours = serialization.load_pem_public_key(sj.public_key_pem.encode())
                if self.signer.slot_key_is(self.keys.named(name), [ours]) == 0:
                    continue  # our generated key, its certificate not (fully) written yet (or a module's placeholder)
            changed.append(name)
        if changed:
            self.set_aside(journal, changed, current, by_slot, goes_on=True)

    def set_aside(self, journal: Journal, names: list[str], current: dict[str, x509.Certificate | None],
                  by_slot: dict[Slot, SlotStatus], *, goes_on: bool = False) -> None:
        """Slots ``names`` of ``journal`` were changed by someone else: keep the journal file under
        another name, say so per slot (audit log and the result), touch nothing on the card.

        ``goes_on``: other slots of the journal continue — the file is copied aside and the journal
        without ``names`` saved at once, so that no crash can lose a slot in progress.

        Raises:
            StateFileError: (``goes_on``) the shortened journal could not be saved; nothing changed.
        """
        try:
            aside = self.ctx.journals.set_aside(journal.card_id, "changed", copy=goes_on)
        except OSError as exc:  # the audit log and the words below still say so
            logger.warning("could not set the journal aside: %s", exc)
            aside = None
        original = {name: journal.slots[name] for name in names}
        if goes_on:
            for name in names:
                del journal.slots[name]
            self.ctx.journals.save(journal, changed=False)  # StateFileError: nothing changed in this run
        where = f"; its journal was kept as {aside.name}" if aside is not None else ""
        for name in names:
            sj = original[name]
            if sj.step in FINAL_STEPS:
                continue
            try:
                ref = self.keys.named(name)
                slot = ref.piv_slot
            except ValueError:
                continue
            self._left_alone(journal, name, ref, sj, current.get(name), by_slot.get(slot), where)

    def _left_alone(self, journal: Journal, name: str, ref: KeyRef, sj: SlotJournal,
                    now_cert: x509.Certificate | None, status: SlotStatus | None, where: str) -> None:
        """Say that the key at ``ref`` was changed by someone else: audit record, result and progress."""
        old = journal_old_certificate(sj) if sj.old_certificate_pem else None
        holds = (f"a certificate it did not write (serial {now_cert.serial_number:X}, valid until "
                 f"{now_cert.not_valid_after_utc:%Y-%m-%d})" if now_cert is not None
                 else "no readable certificate and a key it did not generate")
        error = SlotChangedError(
            f"slot {name} was changed by someone else after the unfinished update {journal.reference} stopped "
            f"(the RA re-issued it, or another tool renewed it): it now holds {holds}. It was left alone and "
            f"that update was set aside{where}")
        error.reference = journal.reference
        self.records.audit(journal, ref, old, now_cert, "changed_elsewhere", error.code)
        slot = ref.piv_slot
        label = status.setting.label if status is not None else slot.name.title()
        self.changed.append(SlotResult(slot, label, old, None, error))
        self.ctx.reporter.step(slot, RenewalStep.FAILED, str(error))
