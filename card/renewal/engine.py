"""The renewal engine (DESIGN §3): preflight, authorise every due slot while the old keys
exist, then per slot generate → CSR signed on the card → issue → verify → PUT DATA → read back
→ test signature, journalling each step; and resume from the journal.

Synchronous; runs on the card worker thread. It never logs or stores the PIN or the
management key; it never writes a certificate that does not match the key in the slot.
"""

from __future__ import annotations


import datetime as dt
import inspect
import logging
from collections.abc import Callable
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from card.certificates import (
    fingerprint,
    fit_certificate_object,
    key_matches,
    load_certificate_pem,
    public_key_der,
)
from card.config import SlotSetting
from card.csr import build_csr
from card.issued_checks import CertificateMismatchError, card_expiry_limit, check_renewal_certificate
from card.enrollment.base import (IssuedCertificate, IssuerRejected, RenewalGrant, RequestSigner, RetryRefused)
from card.errors import (
    ApduError,
    CardError,
    CardRemovedError,
    CertificateTooLargeError,
    NotSupportedError,
    StateFileError,
)
from card.journal import (
    FINAL_STEPS,
    STEP_AUTHORISED,
    STEP_DONE,
    STEP_ENDED,
    STEP_GENERATED,
    STEP_GENERATING,
    STEP_ISSUED,
    STEP_PLANNED,
    STEP_WRITTEN,
    Journal,
    SlotJournal,
)
from card.piv import KeyType, PivSession, Slot
from card.piv.quirks import card_lists_key_type, certificate_too_large
from card.renewal.admin import CardAdministrator
from card.renewal.context import RenewalContext, ask_ca
from card.renewal.model import (CardSummary, SlotState, SlotStatus, card_expiry_status)
from card.renewal.reading import read_card
from card.renewal.records import RunRecords
from card.renewal.results import (CardExpiredError, EndedBeforeChange, RenewalRefused,
                                  RenewalResult, RenewalStep, SlotChangedError, SlotResult)
from card.renewal.signer import CardSigner
from card.secret import Secret, require_secret

logger = logging.getLogger(__name__)
T = TypeVar("T")

DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM


class _Renewal:
    """One run of the engine on one card (state kept across the steps of that run)."""

    def __init__(self, session: PivSession, ctx: RenewalContext, pin: Secret, summary: CardSummary | None = None) -> None:
        self.session = session
        self.ctx = ctx
        self.signer = CardSigner(session, pin)
        self.admin = CardAdministrator(session, ctx.settings, None)
        self._summary = summary
        """The card as the caller read it in this same card transaction (None: read it here)."""
        self.guid: bytes | None = None
        self.card_key_types: set[KeyType] | None = None
        self.records = RunRecords(ctx)
        self.card_expiry: dt.date | None = None
        """The card's CHUID expiration date: no certificate may be valid past it."""
        self._ended: dict[Slot, CardError] = {}
        """Slots the CA refused at authorisation on a resume, before anything in them changed."""
        self._changed: list[SlotResult] = []
        self._refused_before_change: CardError | None = None
        self._on_card: dict[str, x509.Certificate | None] = {}
        """On a resume: the certificate each journalled slot held when this run read the card."""
        """Slots of the journal that someone else changed: left alone, reported after the others."""

    def _ca(self, call: Callable[[], T]) -> T:
        return ask_ca(self.ctx, call)

    # -- the run -------------------------------------------------------------------------
    def run(self) -> RenewalResult:
        ctx, session, settings = self.ctx, self.session, self.ctx.settings
        ctx.reporter.step(None, RenewalStep.PREFLIGHT)
        summary = self._summary
        if summary is None:
            summary = read_card(session, settings, now=ctx.now(), journals=ctx.journals, reader=session.transport.name,
                                pin_retries=False)
        if summary.card_id is None:
            raise RenewalRefused("the card holds no certificate and no CHUID; it cannot be renewed here",
                                 next_step=f"Contact {settings.ra_contact}.")
        self.records.prepare_state_files(summary)
        self.card_key_types = summary.card_key_types
        self.card_expiry = summary.card_expiry
        self.guid = bytes.fromhex(summary.card_id) if summary.card_id and not summary.card_id.startswith("cert-") else None
        self.admin.guid = self.guid
        limit = card_expiry_limit(summary.card_expiry)
        if limit is not None and limit < ctx.now():  # DESIGN §3 step 1; FIPS 201-3 §4.1.4.1
            assert summary.card_expiry is not None
            raise CardExpiredError(
                f"this card expired on {summary.card_expiry:%Y-%m-%d} (its CHUID expiration date); a certificate "
                "may not outlive its card, so it cannot be renewed; nothing was changed",
                next_step=f"Contact {settings.ra_contact}: the card must be replaced.")
        journal = summary.pending_journal
        by_slot = {s.slot: s for s in summary.slots}
        if summary.finished_journal:
            try:
                ctx.journals.clear(summary.card_id)  # every slot done: only the removal was interrupted
            except StateFileError as exc:
                logger.warning("%s", exc)
        if summary.stale_journal is not None:
            self._set_aside(summary.stale_journal, list(summary.stale_journal.slots), summary.journal_certificates,
                            by_slot)
        if journal is None:
            ending = card_expiry_status(summary.card_expiry, settings.window_days, ctx.now())
            if ending == "ending" and (summary.due or summary.expired):
                assert summary.card_expiry is not None
                raise CardExpiredError(
                    f"your card itself expires on {summary.card_expiry:%Y-%m-%d} (its CHUID expiration date), within "
                    f"the {settings.window_days}-day renewal window; a certificate may not outlive its card, so a "
                    "renewal would only shorten your certificates; nothing was changed",
                    next_step=f"Contact {settings.ra_contact} for a new card.")
            if summary.expired:
                names = ", ".join(f"{s.setting.label} ({s.slot.hex})" for s in summary.expired)
                raise RenewalRefused(f"the certificate {names} has expired; self-service renewal of an expired "
                                     "certificate is not allowed", next_step=f"Contact {settings.ra_contact}.")
            unreadable = [s for s in summary.slots if s.state is SlotState.UNREADABLE]
            if not summary.due and unreadable:
                names = ", ".join(f"{s.setting.label} ({s.slot.hex})" for s in unreadable)
                raise RenewalRefused(f"{names} holds an unreadable object, not a certificate; it cannot be renewed here",
                                     next_step=f"Contact {settings.ra_contact}: the slot must be re-issued.")
            if not summary.due:
                nxt = summary.next_renewal_date(settings.window_days)
                notes = "".join(f"; {r.error}" for r in self._changed)
                raise RenewalRefused("your card is up to date" + (f"; next renewal from {nxt.isoformat()}" if nxt else "")
                                     + notes, next_step="Nothing to do now.")
            journal = Journal(summary.card_id)
            for status in summary.due:
                assert status.certificate is not None
                journal.slots[status.slot.hex] = SlotJournal(
                    status.slot.hex, fingerprint(status.certificate), old_certificate_pem=status.certificate.public_bytes(PEM).decode())
        result = RenewalResult(journal.reference)
        # Preflight continued: PIN, management key, issuer, algorithms, sizes. The management key
        # goes first, so that the PIN's VERIFY is the command right before the first 9C signature
        # (F08: management-key work first, then VERIFY immediately followed by the signature) and
        # also serves as its PIN-always VERIFY. A PIN-protected management key (DESIGN §5) is read
        # with the PIN verified, so that source keeps the PIN first.
        if "pin-protected" in settings.sources:
            self.signer.verify_pin()
            self.admin.authenticate()
        else:
            self.admin.authenticate()
            self.signer.verify_pin()
        if summary.pending_journal is not None:
            self._on_card = dict(summary.journal_certificates)
            self._prove_journal(journal, summary.journal_certificates, by_slot)
        try:
            plan = self._prepare(journal, by_slot, result)
        except CardRemovedError:
            raise
        except CardError as exc:  # refused before anything was changed: give the RA a reference
            exc.reference = journal.reference
            self.ctx.audit.write_quietly(reference=journal.reference, card_guid=journal.card_id, slot=None,
                                         outcome="refused", error_code=exc.code)  # kept for the next run if need be
            raise
        self._run_slots(journal, plan, result)
        result.slots.extend(self._changed)
        for status in summary.slots:  # F15: a slot with junk is reported, never silently skipped
            if status.state is SlotState.UNREADABLE and status.slot.hex not in journal.slots:
                result.slots.append(SlotResult(status.slot, status.setting.label, None, None, RenewalRefused(
                    f"holds an unreadable object ({status.error}); it cannot be renewed here",
                    next_step=f"Contact {settings.ra_contact}: the slot must be re-issued.")))
        return result

    # -- resume: prove the card is as the journal left it (DESIGN §3.4) ---------------------------
    def _prove_journal(self, journal: Journal, current: dict[str, x509.Certificate | None],
                       by_slot: dict[Slot, SlotStatus]) -> None:
        """Before anything destructive on a resume: every unfinished slot must hold a certificate the
        journal expects (the old one, or the one issued); a slot whose write may have been torn (no
        readable certificate) must hold the key the journal generated (a test signature). Any other
        slot was changed by someone else: it is left alone and the journal file is set aside (kept,
        renamed), the remaining slots continuing under the same reference.

        The test signature that tells "as journalled" (old key, or the generated one) from "already
        renewed" is made per slot in :meth:`_renew_slot`, right before its first step."""
        changed: list[str] = []
        for name, sj in journal.slots.items():
            if sj.step in FINAL_STEPS:
                continue
            cert = current.get(name)
            if cert is not None and fingerprint(cert) in sj.expected_fingerprints():
                continue
            if cert is None and sj.in_progress and sj.public_key_pem:
                ours = serialization.load_pem_public_key(sj.public_key_pem.encode())
                if self.signer.slot_key_is(Slot.parse(name), [ours]) == 0:
                    continue  # our generated key, its certificate not (fully) written yet
            changed.append(name)
        if changed:
            self._set_aside(journal, changed, current, by_slot, goes_on=True)

    def _set_aside(self, journal: Journal, names: list[str], current: dict[str, x509.Certificate | None],
                   by_slot: dict[Slot, SlotStatus], *, goes_on: bool = False) -> None:
        """Slots ``names`` of ``journal`` were changed by someone else: keep the journal file under
        another name, say so per slot (audit log and the result), touch nothing on the card.

        ``goes_on``: other slots of the journal continue — the file is copied aside and the journal
        without ``names`` saved at once, so that no crash can lose a slot in progress."""
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
                slot = Slot.parse(name)
            except ValueError:
                continue
            now_cert = current.get(name)
            old = _journal_old_certificate(sj) if sj.old_certificate_pem else None
            holds = (f"a certificate it did not write (serial {now_cert.serial_number:X}, valid until "
                     f"{now_cert.not_valid_after_utc:%Y-%m-%d})" if now_cert is not None
                     else "no readable certificate and a key it did not generate")
            error = SlotChangedError(
                f"slot {name} was changed by someone else after the unfinished update {journal.reference} stopped "
                f"(the RA re-issued it, or another tool renewed it): it now holds {holds}. It was left alone and "
                f"that update was set aside{where}")
            error.reference = journal.reference
            self.records.audit(journal, slot, old, now_cert, "changed_elsewhere", error.code)
            status = by_slot.get(slot)
            label = status.setting.label if status is not None else slot.name.title()
            self._changed.append(SlotResult(slot, label, old, None, error))
            self.ctx.reporter.step(slot, RenewalStep.FAILED, str(error))

    def _prepare(self, journal: Journal, by_slot: dict[Slot, SlotStatus],
                 result: RenewalResult) -> list[tuple[SlotSetting, x509.Certificate | None, SlotJournal]]:
        """Preflight against the CA and authorise every due slot while the old keys exist."""
        ctx, settings = self.ctx, self.ctx.settings
        self._check_issuer()
        plan: list[tuple[SlotSetting, x509.Certificate | None, SlotJournal]] = []
        for name, sj in journal.slots.items():
            slot = Slot.parse(name)
            status = by_slot.get(slot)
            setting = status.setting if status else SlotSetting(slot, slot.name.title())
            old = self._old_certificate(status, sj)
            self.signer.key_types[slot] = self._key_type_for(slot, old, sj)
            if old is not None:
                self.signer.slot_key_types[slot] = KeyType.of(old.public_key())
            if old is not None and len(old.public_bytes(DER)) + 256 > settings.max_certificate_bytes:
                raise RenewalRefused(f"slot {slot.hex}: a renewed certificate may not fit the card "
                                     f"({settings.max_certificate_bytes} bytes)")
            plan.append((setting, old, sj))
        # Any order works for request signers: a signer slot is either untouched, already renewed in
        # this run (new key and certificate on the card), or not yet started (old key and certificate
        # intact); the engine stops at the first failure, so it is never caught between GENERATE and PUT DATA.
        self._check_request_signers(plan, by_slot)
        for setting, old, _ in plan:
            result.slots.append(SlotResult(setting.slot, setting.label, old))
        for setting, _, sj in plan:
            ctx.reporter.step(setting.slot, RenewalStep.DONE if sj.step == STEP_DONE else RenewalStep.PENDING)
        # Authorise every due slot while the old keys still exist; PIN-always 9C first, so that its
        # proof of possession follows the preflight VERIFY directly (the other slots need only a
        # verified PIN). The grants are journalled together below, whatever the order.
        for setting, old, sj in sorted(plan, key=lambda entry: entry[0].slot != Slot.SIGNATURE):
            # STEP_AUTHORISED too: GENERATE never started, so the old key is intact and a grant left
            # by an interrupted run (perhaps expired at the RA) is replaced by a fresh one.
            if sj.step in (STEP_PLANNED, STEP_AUTHORISED) and old is not None:
                ctx.reporter.step(setting.slot, RenewalStep.AUTHORISING)
                try:
                    grant = self._ca(lambda: ctx.issuer.authorize_renewal(setting.slot.hex, old,
                                                                         lambda m, s=setting.slot: self.signer.sign(s, m)))
                except IssuerRejected as exc:
                    # Refused while the old key is intact: nothing changed in this slot. Never leave a
                    # journal that would ask again forever (issue 11 item 2); finish what is in progress.
                    if not any(other.in_progress for other in journal.slots.values()):
                        try:
                            ctx.journals.clear(journal.card_id)
                        except StateFileError as file_error:
                            logger.warning("%s", file_error)
                        raise
                    sj.step, sj.error = STEP_ENDED, str(exc)
                    self._ended[setting.slot] = exc
                    continue
                sj.grant = grant.to_dict()
                sj.step = STEP_AUTHORISED
        ctx.journals.save(journal, changed=False)  # StateFileError: nothing changed on the card yet
        return plan

    def _request_signer_slot(self, slot: Slot) -> Slot | None:
        """The slot whose certificate and key sign the CA request for ``slot`` (SCEP RenewalReq), or
        None when the issuer has the new key sign its own request."""
        signer_for = getattr(self.ctx.issuer, "request_signer_slot", None)
        name = signer_for(slot.hex) if signer_for is not None else None
        return Slot.parse(name) if name is not None else None

    def _check_request_signers(self, plan: list[tuple[SlotSetting, x509.Certificate | None, SlotJournal]],
                               by_slot: dict[Slot, SlotStatus]) -> None:
        """Before anything changes: every slot's request signer (SCEP RenewalReq) holds an RSA
        certificate that is valid now (or is renewed in this run before it has to sign) and the
        key in that slot matches it (a test signature).

        Raises:
            RenewalRefused: naming the signer slot and what is wrong with it.
        """
        planned = {setting.slot for setting, _, _ in plan}
        now = self.ctx.now()
        checked: set[Slot] = set()
        for setting, _, _ in plan:
            signer = self._request_signer_slot(setting.slot)
            if signer is None:
                continue
            status = by_slot.get(signer)
            # a slot outside renewal.slots is not in the summary: read it from the card
            cert = status.certificate if status is not None else self.session.read_certificate(signer).certificate
            why = None
            if cert is None:
                why = f"slot {signer.hex} holds no certificate"
            elif not isinstance(cert.public_key(), rsa.RSAPublicKey):
                why = (f"slot {signer.hex} holds an {KeyType.of(cert.public_key()).name} key and the CA's reply "
                       "is encrypted to the signer (RSA only)")
            elif not cert.not_valid_before_utc <= now < cert.not_valid_after_utc and signer not in planned:
                why = f"the certificate in slot {signer.hex} is not valid now"
            elif signer not in checked and self.signer.slot_key_is(signer, [cert.public_key()]) != 0:
                why = f"the key in slot {signer.hex} does not match its certificate"
            checked.add(signer)
            if why:
                raise RenewalRefused(f"a renewal request for slot {setting.slot.hex} is signed with the "
                                     f"certificate in slot {signer.hex}, but {why}; nothing was changed",
                                     next_step=f"Contact {self.ctx.settings.ra_contact}: slot {signer.hex} must hold "
                                               "a working RSA certificate, or the CA must be set to PKCSReq.")

    def _request_signer(self, slot: Slot) -> RequestSigner | None:
        """The other slot's current certificate and card key, when the issuer signs renewal requests
        with them (read from the card now: it may have been renewed earlier in this run)."""
        signer = self._request_signer_slot(slot)
        if signer is None:
            return None
        cert = self.session.read_certificate(signer).certificate
        if cert is None:
            raise RenewalRefused(f"slot {signer.hex} holds no certificate to sign the renewal request for slot {slot.hex}")
        kt = KeyType.of(cert.public_key())
        return RequestSigner(cert, self.signer.card_key(signer, cert.public_key(), kt))

    def _run_slots(self, journal: Journal, plan: list[tuple[SlotSetting, x509.Certificate | None, SlotJournal]],
                   result: RenewalResult) -> None:
        """Renew the authorised slots in order; stop at the first failure."""
        ctx = self.ctx
        for (setting, old, sj), slot_result in zip(plan, result.slots, strict=True):
            if ctx.cancel.is_set():
                slot_result.error = RenewalRefused("cancelled before this certificate was started; nothing was changed in this slot")
                continue
            if setting.slot in self._ended:
                slot_result.error = self._ended[setting.slot]
                self.records.audit(journal, setting.slot, old, None, "refused", slot_result.error.code)
                ctx.reporter.step(setting.slot, RenewalStep.FAILED, str(slot_result.error))
                ctx.reporter.slot_finished(setting.slot, slot_result)
                continue
            try:
                done_before = sj.step == STEP_DONE  # renewed by an earlier, interrupted run
                slot_result.new_certificate = self._renew_slot(setting.slot, old, sj, journal)
                ctx.reporter.slot_finished(setting.slot, slot_result)
                if done_before:
                    continue  # already audited and confirmed by the run that renewed it
                # The "renewed" record went into the journal with its last save (see _write_and_check):
                # append it now; if the log cannot be written it stays there for the next run, and
                # no further destructive step is taken while the audit log cannot be written.
                try:
                    self.records.flush(journal)
                except StateFileError as exc:
                    self.records.save_quietly(journal)
                    result.error = exc
                    break
                if self.records.file_error is not None:  # the journal went to the fallback directory
                    result.error = self.records.file_error
                    break
                if slot_result is not result.slots[-1] and not ctx.between_slots(slot_result):
                    ctx.cancel.set()
            except EndedBeforeChange as ended:
                # The card refused before anything in this slot changed (proved by the old key's test
                # signature): end the journal for it and for the slots not started, whose old keys are
                # intact too, so that no later run "resumes" into the same refusal (issue 11 item 2).
                exc = self._refused_before_change = ended.error
                exc.reference = journal.reference
                sj.step, sj.error = STEP_ENDED, str(exc)
                slot_result.error = exc
                for other in journal.slots.values():
                    if other.step in (STEP_PLANNED, STEP_AUTHORISED):
                        other.step = STEP_ENDED
                self.records.save_quietly(journal)
                self.records.audit(journal, setting.slot, old, None, "refused", exc.code)
                ctx.reporter.step(setting.slot, RenewalStep.FAILED, str(exc))
                ctx.reporter.slot_finished(setting.slot, slot_result)
                result.error = result.error or exc
                break
            except CardRemovedError as exc:
                sj.error = str(exc)
                slot_result.error = exc
                self.records.audit(journal, setting.slot, old, None, "interrupted", exc.code)
                self.records.save_quietly(journal)
                ctx.reporter.step(setting.slot, RenewalStep.FAILED, str(exc))
                ctx.reporter.slot_finished(setting.slot, slot_result)
                result.error = exc
                break  # nothing more can be done without the card
            except Exception as exc:  # noqa: BLE001 - the journal keeps the slot resumable, whatever failed
                if not isinstance(exc, CardError):
                    logger.exception("unexpected error while renewing slot %s", setting.slot.hex)
                    exc = CardError(f"internal error ({exc.__class__.__name__}); the update can be resumed")
                sj.error = str(exc)
                slot_result.error = exc
                self.records.audit(journal, setting.slot, old, None, "failed", exc.code)
                self.records.save_quietly(journal)  # a file error here is the one already reported
                ctx.reporter.step(setting.slot, RenewalStep.FAILED, str(exc))
                ctx.reporter.slot_finished(setting.slot, slot_result)
                result.error = result.error or exc
                break  # never destroy another slot's working key after a failure
        for slot_result in result.slots:
            if slot_result.new_certificate is None and slot_result.error is None:
                slot_result.error = RenewalRefused("not attempted after the previous failure; nothing was changed in this slot")
        if journal.finished and not journal.audit_pending:
            try:
                ctx.journals.clear(journal.card_id)
            except StateFileError as exc:  # finished: never resumed; the next run's preflight removes it
                logger.warning("%s", exc)
        else:
            result.journal_kept = True
        refused = self._refused_before_change
        if (refused is not None and not result.journal_kept and not self._changed
                and not any(r.new_certificate is not None for r in result.slots)):
            raise refused  # nothing at all changed on the card: exit 11 / 12, never "run renew again"

    def _old_certificate(self, status: SlotStatus | None, sj: SlotJournal) -> x509.Certificate | None:
        """The certificate being renewed, if the slot still holds it (else None)."""
        cert = status.certificate if status is not None else None
        if cert is not None and fingerprint(cert) == sj.old_fingerprint:
            return cert
        return None

    def _key_type_for(self, slot: Slot, old: x509.Certificate | None, sj: SlotJournal) -> KeyType:
        if self.ctx.settings.key_type is not None:
            kt = self.ctx.settings.key_type
        elif old is not None:
            kt = KeyType.of(old.public_key())
        elif sj.public_key_pem:
            kt = KeyType.of(serialization.load_pem_public_key(sj.public_key_pem.encode()))
        elif sj.old_certificate_pem:
            kt = KeyType.of(_journal_old_certificate(sj).public_key())
        else:
            raise RenewalRefused(f"slot {slot.hex}: the key type cannot be determined")
        if not card_lists_key_type(self.card_key_types, kt):  # F13: ask the card first
            raise NotSupportedError(f"this card cannot generate {kt.name} keys (it lists "
                                    f"{', '.join(sorted(k.name for k in self.card_key_types or ())) or 'none'}); "
                                    "nothing was changed")
        if kt.name not in self.ctx.issuer.supported_key_types():
            raise NotSupportedError(f"the certificate authority cannot certify {kt.name} keys; nothing was changed")
        return kt

    def _check_issuer(self) -> None:
        cas = self._ca(self.ctx.issuer.ca_certificates)
        pinned = self.ctx.settings.issuer.ca_fingerprint
        if pinned and not any(fingerprint(ca) == pinned for ca in cas):
            raise RenewalRefused("the certificate authority's certificate does not match the pinned fingerprint; "
                                 "nothing was changed", next_step=f"Contact {self.ctx.settings.ra_contact}.")

    # -- one slot --------------------------------------------------------------------------
    def _renew_slot(self, slot: Slot, old: x509.Certificate | None, sj: SlotJournal, journal: Journal) -> x509.Certificate:
        ctx = self.ctx
        if sj.step == STEP_DONE and sj.certificate_pem:
            return x509.load_pem_x509_certificate(sj.certificate_pem.encode())
        new_cert = x509.load_pem_x509_certificate(sj.certificate_pem.encode()) if sj.certificate_pem else None
        new_key = serialization.load_pem_public_key(sj.public_key_pem.encode()) if sj.public_key_pem else None
        resuming = sj.step not in (STEP_PLANNED, STEP_AUTHORISED)
        if resuming:
            # Learn what the slot holds now, by a test signature against what we know.
            candidates: list[PublicKeyTypes] = []
            if new_cert is not None:
                candidates.append(new_cert.public_key())
            if new_key is not None:
                candidates.append(new_key)
            journal_old = _journal_old_certificate(sj)
            candidates.append(journal_old.public_key())
            found = self.signer.slot_key_is(slot, candidates) if candidates else None
            current = candidates[found] if found is not None else None
            if current is not None and new_cert is not None and key_matches(new_cert, current):
                # as journalled (a certificate already issued is written without asking the CA again),
                # or renewed already (it is on the card: finish with the read-back and the test signature)
                held = self._on_card.get(slot.hex)
                on_card = held is not None and held.public_bytes(DER) == new_cert.public_bytes(DER)
                return self._write_and_check(slot, new_cert, current, sj, journal, on_card=on_card)
            if current is not None and new_key is not None and public_key_der(current) == public_key_der(new_key):
                return self._issue_write(slot, new_key, sj, journal)
            if current is not None and key_matches(journal_old, current):
                sj.step = STEP_PLANNED  # the old key is intact: start this slot over
                ctx.reporter.step(slot, RenewalStep.AUTHORISING)
                grant = self._ca(lambda: ctx.issuer.authorize_renewal(slot.hex, journal_old, lambda m: self.signer.sign(slot, m)))
                sj.grant, sj.step = grant.to_dict(), STEP_AUTHORISED
                sj.public_key_pem = sj.csr_pem = sj.certificate_pem = None
                ctx.journals.save(journal)
            elif sj.grant is None:
                raise RenewalRefused(f"slot {slot.hex}: the old key is gone and no renewal grant is left",
                                     next_step=f"Contact {ctx.settings.ra_contact} with reference {journal.reference}.")
            # else: unknown key in the slot (generation interrupted): generate again with the grant.
        if sj.grant is None:
            raise RenewalRefused(f"slot {slot.hex}: no renewal grant")
        # GENERATE (destructive): journal before and after. (The management key was
        # authenticated in preflight and stays so for this connection.)
        sj.step = STEP_GENERATING
        sj.public_key_pem = sj.csr_pem = sj.certificate_pem = None
        ctx.journals.save(journal)
        ctx.reporter.step(slot, RenewalStep.GENERATING)
        try:
            new_key = self.admin.run(lambda: self.session.generate_key(slot, self.signer.key_types[slot]))
        except (NotSupportedError, ApduError) as exc:
            self._end_if_unchanged(slot, sj, exc)
            raise
        self.signer.slot_key_types[slot] = self.signer.key_types[slot]
        sj.public_key_pem = new_key.public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        sj.step = STEP_GENERATED
        self.records.save_progress(journal)
        return self._issue_write(slot, new_key, sj, journal)

    def _end_if_unchanged(self, slot: Slot, sj: SlotJournal, exc: CardError) -> None:
        """GENERATE was refused: when the old key still answers (a test signature verified with the old
        certificate), nothing changed in the slot — raise :class:`EndedBeforeChange` (the journal ends).
        Otherwise return, and the caller re-raises (the journal keeps the slot resumable)."""
        if not sj.old_certificate_pem:
            return
        old = _journal_old_certificate(sj)
        try:
            unchanged = self.signer.slot_key_is(slot, [old.public_key()]) == 0
        except CardError:
            return
        if not unchanged:
            return
        if isinstance(exc, NotSupportedError):
            error: CardError = NotSupportedError(
                str(exc),
                next_step=f"Nothing was changed on your card. Contact {self.ctx.settings.ra_contact} with the "
                          "reference shown: the configured key algorithm (renewal.key_type) does not suit this card.")
        else:
            error = RenewalRefused(
                f"slot {slot.hex}: the card refused to generate a new key ({exc}); nothing was changed",
                next_step=f"Nothing was changed on your card. Contact {self.ctx.settings.ra_contact} with the "
                          "reference shown.")
        raise EndedBeforeChange(error) from exc

    def _issue_write(self, slot: Slot, new_key: PublicKeyTypes, sj: SlotJournal, journal: Journal) -> x509.Certificate:
        ctx = self.ctx
        assert sj.grant is not None
        grant = RenewalGrant.from_dict(sj.grant)
        old_cert = _journal_old_certificate(sj)
        ctx.reporter.step(slot, RenewalStep.REQUESTING)
        challenge_for = getattr(ctx.issuer, "challenge_password", None)
        challenge = challenge_for(grant) if challenge_for is not None else None
        try:  # ask for the old subject *and* alternative names (a CA may copy them from the CSR)
            san = old_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = None
        csr = build_csr(old_cert.subject, new_key, lambda m: self.signer.sign(slot, m), challenge_password=challenge,
                        alternative_names=san)
        if challenge is None:  # a CSR carrying a challenge password is a secret: never journalled
            sj.csr_pem = csr.public_bytes(PEM).decode()
        del challenge
        ctx.reporter.step(slot, RenewalStep.ISSUING)
        card_key = self.signer.card_key(slot, new_key)
        request_signer = self._request_signer(slot)
        extra: dict[str, object] = {"request_signer": request_signer} if request_signer is not None else {}
        limit = card_expiry_limit(self.card_expiry)
        if limit is not None and _accepts(ctx.issuer.issue, "not_after_limit"):
            extra["not_after_limit"] = limit  # an issuer that can, issues within the card's own life
        if not grant.request_sent:  # from here on the CA may issue before we hear back: say so for a resume
            sj.grant = {**sj.grant, "request_sent": "1"}
            self.records.save_progress(journal)
        try:
            issued = self._ca(lambda: ctx.issuer.issue(grant, csr, new_key, card_key=card_key, **extra))
        except IssuerRejected as exc:
            if not isinstance(exc, RetryRefused):  # the CA answered this request: nothing is waiting there
                sj.grant = {k: v for k, v in sj.grant.items() if k != "request_sent"}
            raise
        ctx.reporter.step(slot, RenewalStep.VERIFYING)
        self._check_issued(slot, issued, new_key, old_cert)
        sj.certificate_pem = issued.certificate.public_bytes(PEM).decode()
        sj.grant = {k: v for k, v in sj.grant.items() if k != "secret"}  # the RA's one-time challenge is spent
        sj.step = STEP_ISSUED
        self.records.save_progress(journal)
        return self._write_and_check(slot, issued.certificate, new_key, sj, journal)

    def _check_issued(self, slot: Slot, issued: IssuedCertificate, new_key: PublicKeyTypes,
                      old: x509.Certificate) -> None:
        """Before anything is written: the key, identity, powers, validity (card expiry) and the chain
        (DESIGN §3 step 3; :mod:`card.issued_checks`)."""
        cert = issued.certificate
        if not key_matches(cert, new_key):
            raise CertificateMismatchError(f"slot {slot.hex}: the CA returned a certificate for a different key")
        for ca in self.ctx.issuer.ca_certificates():
            try:
                cert.verify_directly_issued_by(ca)
                break
            except Exception:  # noqa: BLE001 - any failure means "not this CA"
                continue
        else:
            raise CertificateMismatchError(f"slot {slot.hex}: the new certificate does not chain to the certificate "
                                           "authority")
        check_renewal_certificate(slot.hex, old, cert, card_expiry=self.card_expiry, now=self.ctx.now())

    def _write_and_check(self, slot: Slot, cert: x509.Certificate, key: PublicKeyTypes, sj: SlotJournal,
                         journal: Journal, *, on_card: bool = False) -> x509.Certificate:
        """PUT DATA (unless ``on_card``: the card already holds exactly ``cert``), read back, test signature."""
        ctx = self.ctx
        if not key_matches(cert, key):  # never write a certificate that does not match the slot's key
            raise CertificateMismatchError(f"slot {slot.hex}: certificate and key do not match; not written")
        der = cert.public_bytes(DER)
        if not on_card:
            value = fit_certificate_object(der, ctx.settings.max_certificate_bytes)  # F05: before writing
            ctx.reporter.step(slot, RenewalStep.WRITING)
            try:
                self.admin.run(lambda: self.session.put_data(slot.object_id, value))
            except ApduError as exc:
                if certificate_too_large(exc.sw):  # the card's own capacity is smaller than configured
                    raise CertificateTooLargeError(
                        f"slot {slot.hex}: certificate too large for this card ({len(der)} bytes; the card answered "
                        f"{exc.sw:04X})") from exc
                raise
            sj.step = STEP_WRITTEN
            self.records.save_progress(journal)
        ctx.reporter.step(slot, RenewalStep.READING_BACK)
        back = self.session.read_certificate(slot)
        if back.certificate is None or back.certificate.public_bytes(DER) != der:
            raise CardError(f"slot {slot.hex}: the certificate read back differs from the one written")
        ctx.reporter.step(slot, RenewalStep.TEST_SIGNATURE)
        if self.signer.slot_key_is(slot, [cert.public_key()]) != 0:
            raise CertificateMismatchError(f"slot {slot.hex}: the test signature does not verify with the new certificate")
        sj.step = STEP_DONE
        sj.error = None
        # the audit record rides in the same atomic save: if the log cannot take it, the next run writes it
        record = self.records.audit_record(journal, slot, _journal_old_certificate(sj) if sj.old_certificate_pem else None,
                                    cert, "renewed", None)
        journal.audit_pending.append(record)
        try:
            self.records.save_progress(journal)
        except StateFileError:  # the file still says "written": the next run finishes this slot and audits it
            journal.audit_pending.remove(record)
            sj.step = STEP_WRITTEN
            raise
        ctx.reporter.step(slot, RenewalStep.DONE)
        return cert


def _accepts(function: Callable[..., object], name: str) -> bool:
    """Whether ``function`` takes the keyword argument ``name`` (optional issuer capabilities)."""
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _journal_old_certificate(sj: SlotJournal) -> x509.Certificate:
    if not sj.old_certificate_pem:
        raise RenewalRefused(f"slot {sj.slot}: the journal does not hold the certificate being renewed")
    return load_certificate_pem(sj.old_certificate_pem)  # a negative serial loads too


def renew(session: PivSession, ctx: RenewalContext, pin: Secret, *, summary: CardSummary | None = None) -> RenewalResult:
    """Renew every due slot of the card, or resume the card's unfinished journal.

    Args:
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
        return _Renewal(session, ctx, pin, summary).run()
    finally:
        pin.wipe()


