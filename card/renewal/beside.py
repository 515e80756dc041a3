"""Side-by-side renewal of one key (issue 14; DESIGN §3 as a token with spare key containers allows).

On a token whose ``info.side_by_side`` is True (a PKCS#11 token such as SoftHSM2 or a vendor card),
the new key is made *beside* the old one, under a new ``CKA_ID``, and the old key and certificate
are removed only after the new certificate is written beside its key and a test signature
verified with it. At no moment does the token lack a working key with its matching certificate.

Per key, in this order (each step journalled before the next destructive one)::

    authorise with the OLD key (one-time grant)      journal: authorised
    new random CKA_ID, journalled                    journal: generating (new_key_id)
    C_GenerateKeyPair under it, "<label> (renewing)" journal: generated (public key)
    CSR signed by the new key → issue → verify       journal: issued (certificate)
    write the certificate beside its key, read back, test signature
                                                     journal: written
    delete the old key and certificate — or, with ``[card] old_keys = "keep"``, relabel them
    "<label> (superseded YYYY-MM-DD)"                journal: retired
    relabel the new objects with the old label       journal: done (+ audit record)

Resume (:func:`decide`): the journal names the old and new ``CKA_ID``; a key whose old certificate
changed since the journal (fingerprint) is never touched; a new key without a certificate is
deleted only when the journal proves this update made it (its id was journalled before
C_GenerateKeyPair) and nothing was issued for it; a new certificate already written and working →
only the clean-up is finished.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from card.certificates import key_matches, load_certificate_pem, verify_signature
from card.csr import build_csr
from card.enrollment.base import CardKey, IssuedCertificate, IssuerRejected, RenewalGrant, RequestSigner, RetryRefused
from card.errors import CardError, CardRemovedError, OperationCancelled
from card.issued_checks import CertificateMismatchError, card_expiry_limit, check_renewal_certificate, issued_by_one_of
from card.journal import Journal, JournalStep, SlotJournal
from card.piv import KeyType
from card.renewal.beside_resume import BesideResume, decide, renewing_label, request_sent, superseded_label
from card.renewal.context import RenewalContext, ask_ca
from card.renewal.records import RunRecords
from card.renewal.results import EndedBeforeChange, RenewalRefused, RenewalStep, SlotChangedError
from card.token import KeyRef, Token

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER
NEW_KEY_ID_BYTES = 16
"""Length of the random ``CKA_ID`` a new key gets (never one the token already uses)."""


class BesideSteps:
    """The side-by-side steps of the keys of one run on one token.

    Args:
        token: the token (``info.side_by_side`` True), logged in with the user PIN.
        card_expiry: the token's own expiry, if it has one (no certificate may outlive it).
    """

    def __init__(self, token: Token, ctx: RenewalContext, records: RunRecords, card_expiry: dt.date | None = None) -> None:
        self.token = token
        self.ctx = ctx
        self.records = records
        self.card_expiry = card_expiry

    # -- the key, from its journalled step to Done ------------------------------------------
    def renew_key(self, old: KeyRef, sj: SlotJournal, journal: Journal) -> x509.Certificate:
        """Take the key at ``old`` from its journalled step to Done; return its new certificate.

        Raises:
            SlotChangedError: the old certificate (or our new objects) changed since the journal:
                nothing was touched.
            EndedBeforeChange: the token or the CA refused before the old key was touched, and what
                this update made was removed (or, when something may have been issued, left
                under a "(renewing)" label); the journal ends for this key.
            IssuerError, CardError, StateFileError: the journal keeps the key resumable; the old key
                and certificate still work.
        """
        if sj.step == JournalStep.DONE and sj.certificate_pem:
            return load_certificate_pem(sj.certificate_pem)
        sj.old_key_id = sj.old_key_id or old.hex
        sj.label = sj.label if sj.label is not None else old.label
        old_cert = load_certificate_pem(self._old_pem(sj))
        action = self.inspect(old, sj)
        if action is BesideResume.CHANGED:
            raise SlotChangedError(f"key {old.hex} ({sj.label}) was changed by someone else after the update "
                                   f"{journal.reference} stopped; it was left alone")
        if action is BesideResume.FINISH:
            return self.finish(old, sj, journal)
        if action is BesideResume.DISCARD:
            self.discard(sj, journal)
        key_type = self.key_type(old_cert)
        if action in (BesideResume.START, BesideResume.DISCARD):
            try:
                self.request_signer(old, old_cert)  # refused here, before anything of this key changes
            except RenewalRefused as exc:
                raise EndedBeforeChange(exc) from exc
            if sj.grant is None or request_sent(sj):  # a spent grant: the old key still proves possession
                self.authorise(old, old_cert, sj, journal)
            new_key = self.generate(sj, journal, key_type)
        else:
            assert sj.public_key_pem is not None
            new_key = serialization.load_pem_public_key(sj.public_key_pem.encode())
        if action is BesideResume.WRITE:
            assert sj.certificate_pem is not None
            cert = load_certificate_pem(sj.certificate_pem)
        else:
            cert = self.issue(old, old_cert, new_key, key_type, sj, journal)
        self.write_and_check(cert, key_type, sj, journal, maybe_written=action is BesideResume.WRITE)
        return self.finish(old, sj, journal)

    def renew_slot(self, ref: KeyRef, sj: SlotJournal, journal: Journal) -> x509.Certificate:
        """:meth:`renew_key` under the engine's name for it (``card.renewal.steps.KeySteps``)."""
        return self.renew_key(ref, sj, journal)

    def changed_keys(self, journal: Journal) -> list[str]:
        """On a resume, before anything changes: the unfinished keys of ``journal`` whose old
        certificate (or whose new objects) someone else changed since (:func:`decide`: CHANGED).
        The engine sets them aside; they are never touched."""
        changed = []
        for name, sj in journal.slots.items():
            if sj.step in (JournalStep.DONE, JournalStep.ENDED):
                continue
            sj.old_key_id = sj.old_key_id or name
            if self.inspect(KeyRef(bytes.fromhex(name), sj.label or ""), sj) is BesideResume.CHANGED:
                changed.append(name)
        return changed

    @staticmethod
    def _old_pem(sj: SlotJournal) -> str:
        if not sj.old_certificate_pem:
            raise RenewalRefused(f"key {sj.slot}: the journal does not hold the certificate being renewed")
        return sj.old_certificate_pem

    def new_ref(self, sj: SlotJournal, *, final: bool = False) -> KeyRef:
        """The new key's reference (journalled id), labelled "(renewing)" until ``final``."""
        assert sj.new_key_id is not None and sj.label is not None
        return KeyRef(bytes.fromhex(sj.new_key_id), sj.label if final else renewing_label(sj.label))

    def key_type(self, old_cert: x509.Certificate) -> KeyType:
        """The new key's type: ``renewal.key_type``, else the old key's (F13)."""
        return self.ctx.settings.key_type or KeyType.of(old_cert.public_key())

    def _step(self, sj: SlotJournal, step: RenewalStep) -> None:
        """Report ``step`` of the key ``sj`` renews, named by the key being renewed (its old
        ``CKA_ID`` and label, as :attr:`SlotResult.slot`) whichever object the step works on (tester F-19)."""
        self.ctx.reporter.step(KeyRef(bytes.fromhex(sj.slot), sj.label or ""), step)

    def _check_cancel(self) -> None:
        if self.ctx.cancel.is_set():
            raise OperationCancelled("stopped between two steps; the old certificate still works and the update "
                                     "can be resumed")

    # -- what the token holds ---------------------------------------------------------------
    def inspect(self, old: KeyRef, sj: SlotJournal) -> BesideResume:
        """Read the old and new objects and :func:`decide` (a test signature only when a new key is journalled)."""
        if sj.new_key_id is None or sj.step in (JournalStep.PLANNED, JournalStep.AUTHORISED):
            now = self.token.certificate(old)
            return decide(sj, now.certificate, now.certificate is None and now.raw is not None, None, False)
        held = self.token.certificate(old)
        new = self.new_ref(sj)
        new_now = self.token.certificate(new).certificate
        works = False
        if sj.public_key_pem and sj.step is not JournalStep.GENERATING:
            works = self.key_works(new, serialization.load_pem_public_key(sj.public_key_pem.encode()))
        return decide(sj, held.certificate, held.certificate is None and held.raw is not None, new_now, works)

    def key_works(self, ref: KeyRef, public_key: PublicKeyTypes) -> bool:
        """A test signature over 32 random bytes by the key at ``ref``, verified with ``public_key``.

        Raises:
            CardRemovedError, OperationCancelled: (any other token refusal is "does not work").
        """
        challenge = os.urandom(32)
        try:
            signature = self.token.sign(ref, KeyType.of(public_key), challenge)
        except (CardRemovedError, OperationCancelled):
            raise
        except CardError:
            return False
        return verify_signature(public_key, signature, challenge)

    # -- the steps ---------------------------------------------------------------------------
    def authorise(self, old: KeyRef, old_cert: x509.Certificate, sj: SlotJournal, journal: Journal) -> None:
        """A one-time grant from the CA, the OLD key proving possession; journalled at once."""
        self._step(sj, RenewalStep.AUTHORISING)
        kt = KeyType.of(old_cert.public_key())
        try:
            grant = ask_ca(self.ctx, lambda: self.ctx.issuer.authorize_renewal(
                old.hex, old_cert, lambda m: self.token.sign(old, kt, m)))
        except IssuerRejected as exc:  # nothing of this update is on the token: the journal ends here
            raise EndedBeforeChange(exc) from exc
        sj.grant, sj.step = grant.to_dict(), JournalStep.AUTHORISED
        sj.public_key_pem = sj.csr_pem = sj.certificate_pem = None
        self.ctx.journals.save(journal)

    def discard(self, sj: SlotJournal, journal: Journal) -> None:
        """Delete what this update made under its new id (journalled before C_GenerateKeyPair; nothing
        issued for it). Objects there with another label than ours are left alone (tester F-28)."""
        ref = self.new_ref(sj)
        held = next((r for r in self.token.key_refs() if r.key_id == ref.key_id), None)
        if held is None or held.label == ref.label:  # journals are searched, never trusted (issue 11)
            self.token.delete(ref)
        sj.new_key_id = sj.public_key_pem = sj.csr_pem = None
        sj.step = JournalStep.AUTHORISED if sj.grant is not None and not request_sent(sj) else JournalStep.PLANNED
        self.records.save_progress(journal)

    def generate(self, sj: SlotJournal, journal: Journal, key_type: KeyType) -> PublicKeyTypes:
        """A new key pair under a new random ``CKA_ID`` (journalled first), beside the old one.

        Raises:
            EndedBeforeChange: the token refused; whatever it made under the new id was deleted.
        """
        self._check_cancel()
        new_id = os.urandom(NEW_KEY_ID_BYTES)
        while self.token.public_key(KeyRef(new_id, "")) is not None:  # never an id the token uses
            new_id = os.urandom(NEW_KEY_ID_BYTES)
        sj.new_key_id, sj.step = new_id.hex().upper(), JournalStep.GENERATING
        sj.public_key_pem = sj.csr_pem = sj.certificate_pem = None
        self.ctx.journals.save(journal)  # StateFileError: nothing changed on the token yet
        ref = self.new_ref(sj)
        self._step(sj, RenewalStep.GENERATING)
        try:
            public_key = self.token.generate_key(ref, key_type)
        except CardRemovedError:
            raise
        except CardError as exc:
            self._end(sj, journal, exc, f"the token refused to generate a new {key_type.name} key ({exc})")
        sj.public_key_pem = public_key.public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        sj.step = JournalStep.GENERATED
        self.records.save_progress(journal)
        return public_key

    def _end(self, sj: SlotJournal, journal: Journal, exc: CardError, why: str, *, delete: bool = True) -> NoReturn:
        """End this key's update before the old key was touched: delete the new key (``delete``:
        nothing was issued for it), then raise :class:`EndedBeforeChange`. When the delete fails the
        original error is raised and the journal keeps the key resumable (DISCARD)."""
        if delete and sj.new_key_id is not None:
            try:
                self.token.delete(self.new_ref(sj))
            except CardError:
                raise exc from None
            sj.new_key_id = sj.public_key_pem = None
        error = exc if isinstance(exc, (IssuerRejected, CertificateMismatchError)) else RenewalRefused(
            f"key {sj.slot}: {why}; the old certificate was not touched",
            next_step=f"Nothing was changed on your token. Contact {self.ctx.settings.ra_contact} with the reference shown.")
        raise EndedBeforeChange(error) from exc

    def issue(self, old: KeyRef, old_cert: x509.Certificate, new_key: PublicKeyTypes, key_type: KeyType,
              sj: SlotJournal, journal: Journal) -> x509.Certificate:
        """CSR signed by the new key → issue (the journal says "request sent" first) → verify →
        journal "issued".

        Raises:
            EndedBeforeChange: the CA refused (its answer: the new key is deleted) or issued a
                certificate that fails verification (the new key stays, labelled "(renewing)").
        """
        assert sj.grant is not None
        self._check_cancel()
        grant, ref = RenewalGrant.from_dict(sj.grant), self.new_ref(sj)
        self._step(sj, RenewalStep.REQUESTING)
        challenge = self.ctx.issuer.challenge_password(grant)
        try:
            san = old_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = None
        csr = build_csr(old_cert.subject, new_key, lambda m: self.token.sign(ref, key_type, m),
                        challenge_password=challenge, alternative_names=san)
        if challenge is None:  # a CSR carrying a challenge password is a secret: never journalled
            sj.csr_pem = csr.public_bytes(PEM).decode()
        del challenge
        if not request_sent(sj):  # from here on the CA may issue before we hear back
            sj.grant = {**sj.grant, "request_sent": "1"}
            self.records.save_progress(journal)
        self._step(sj, RenewalStep.ISSUING)
        issued = self._ask_issue(old, old_cert, grant, csr, new_key, key_type, sj, journal)
        self._step(sj, RenewalStep.VERIFYING)
        try:
            self.check_issued(old, issued, new_key, old_cert)
        except CertificateMismatchError as exc:  # something was issued for the new key: it stays
            self._end(sj, journal, exc, str(exc), delete=False)
        sj.certificate_pem = issued.certificate.public_bytes(PEM).decode()
        sj.grant = {k: v for k, v in sj.grant.items() if k != "secret"}  # the RA's one-time challenge is spent
        sj.step = JournalStep.ISSUED
        self.records.save_progress(journal)
        return issued.certificate

    def _ask_issue(self, old: KeyRef, old_cert: x509.Certificate, grant: RenewalGrant,
                   csr: x509.CertificateSigningRequest, new_key: PublicKeyTypes, key_type: KeyType,
                   sj: SlotJournal, journal: Journal) -> IssuedCertificate:
        ref = self.new_ref(sj)
        card_key = CardKey(new_key, lambda m: self.token.sign(ref, key_type, m), lambda b: self.token.decipher(ref, b))
        try:
            return ask_ca(self.ctx, lambda: self.ctx.issuer.issue(
                grant, csr, new_key, card_key=card_key, request_signer=self.request_signer(old, old_cert),
                not_after_limit=card_expiry_limit(self.card_expiry)))
        except IssuerRejected as exc:
            if isinstance(exc, RetryRefused):  # the CA may hold a certificate for the new key: keep it
                self._end(sj, journal, exc, str(exc), delete=False)
            assert sj.grant is not None
            sj.grant = {k: v for k, v in sj.grant.items() if k != "request_sent"}
            self._end(sj, journal, exc, str(exc))  # the CA answered: nothing was issued for the new key

    def request_signer(self, old: KeyRef, old_cert: x509.Certificate) -> RequestSigner | None:
        """The certificate and key signing a renewal request (SCEP RenewalReq, RFC 8894 §3.3.1): on a
        side-by-side token the old key and certificate, which still exist.

        Raises:
            RenewalRefused: the old key is not RSA (the CA could not encrypt its reply to it; nothing changed).
        """
        if self.ctx.issuer.request_signer_slot(old.hex) is None:
            return None
        kt = KeyType.of(old_cert.public_key())
        if kt is not KeyType.RSA2048:  # the CA encrypts its reply to the signer (RFC 8894 §3.3.2)
            raise RenewalRefused(f"key {old.hex}: the certificate authority wants renewal requests signed with the old "
                                 f"key, which is {kt.name} (RSA only); nothing was changed",
                                 next_step=f"Contact {self.ctx.settings.ra_contact}: the CA must be set to PKCSReq.")
        return RequestSigner(old_cert, CardKey(old_cert.public_key(), lambda m: self.token.sign(old, kt, m),
                                               lambda b: self.token.decipher(old, b)))

    def check_issued(self, old: KeyRef, issued: IssuedCertificate, new_key: PublicKeyTypes,
                     old_cert: x509.Certificate) -> None:
        """Before anything is written: key, chain, identity, powers, validity (:mod:`card.issued_checks`).

        Raises:
            CertificateMismatchError: naming what does not match.
        """
        cert = issued.certificate
        if not key_matches(cert, new_key):
            raise CertificateMismatchError(f"key {old.hex}: the CA returned a certificate for a different key")
        if not issued_by_one_of(cert, self.ctx.issuer.ca_certificates()):
            raise CertificateMismatchError(f"key {old.hex}: the new certificate does not chain to the certificate authority")
        check_renewal_certificate(old.hex, old_cert, cert, card_expiry=self.card_expiry, now=self.ctx.now())

    def write_and_check(self, cert: x509.Certificate, key_type: KeyType, sj: SlotJournal, journal: Journal, *,
                        maybe_written: bool = False) -> None:
        """Write the certificate beside its key (on a resume, ``maybe_written``: unless it is there
        already), read it back, test signature with the new key verified with the new certificate;
        journal "written".

        Raises:
            CertificateMismatchError: the read-back differs or the test signature fails (the old
                key and certificate are still there and working).
        """
        ref, der = self.new_ref(sj), cert.public_bytes(DER)
        self._check_cancel()
        if not maybe_written or self.token.certificate(ref).raw != der:
            self._step(sj, RenewalStep.WRITING)
            self.token.write_certificate(ref, der, ref.label)
        self._step(sj, RenewalStep.READING_BACK)
        back = self.token.certificate(ref)
        if back.certificate is None or back.certificate.public_bytes(DER) != der:
            raise CertificateMismatchError(f"key {sj.slot}: the certificate read back differs from the one written")
        self._step(sj, RenewalStep.TEST_SIGNATURE)
        if not self.key_works(ref, cert.public_key()):
            raise CertificateMismatchError(f"key {sj.slot}: the test signature does not verify with the new certificate")
        del key_type
        sj.step = JournalStep.WRITTEN
        self.records.save_progress(journal)

    def finish(self, old: KeyRef, sj: SlotJournal, journal: Journal) -> x509.Certificate:
        """The new certificate is written and works: retire the old key and certificate (delete, or
        relabel as superseded), then give the new objects the old label; journal "done" with the audit
        record in the same save."""
        assert sj.certificate_pem is not None and sj.label is not None
        cert = load_certificate_pem(sj.certificate_pem)
        if sj.step != JournalStep.RETIRED:
            if self.ctx.settings.token.old_keys == "keep":
                self.token.relabel(old, superseded_label(sj.label, self.ctx.now().date()))
            else:
                self.token.delete(old)
            sj.step = JournalStep.RETIRED
            self.records.save_progress(journal)
        new = self.new_ref(sj, final=True)
        self.token.relabel(new, sj.label)
        self._journal_done(old, cert, sj, journal)
        self._step(sj, RenewalStep.DONE)
        return cert

    def _journal_done(self, old: KeyRef, cert: x509.Certificate, sj: SlotJournal, journal: Journal) -> None:
        sj.step, sj.error = JournalStep.DONE, None
        previous = load_certificate_pem(sj.old_certificate_pem) if sj.old_certificate_pem else None
        record = self.ctx.audit.record(
            event="certificate", reference=journal.reference, card_guid=journal.card_id, holder=self.ctx.holder,
            slot=old.hex, outcome="renewed", error_code=None,
            old_serial=f"{previous.serial_number:X}" if previous else None,
            old_not_after=previous.not_valid_after_utc.isoformat() if previous else None,
            new_serial=f"{cert.serial_number:X}", new_not_after=cert.not_valid_after_utc.isoformat(),
            new_key_id=sj.new_key_id)
        journal.audit_pending.append(record)
        try:
            self.records.save_progress(journal)
        except CardError:  # the file still says "retired": the next run relabels (again) and audits
            journal.audit_pending.remove(record)
            sj.step = JournalStep.RETIRED
            raise
