"""The per-slot steps (DESIGN §3 step 3): generate the key on the card → CSR signed by the card →
``issuer.issue`` → verify the returned certificate → PUT DATA → read back and compare → a test
signature with the new key verified with the new certificate → Done; each step journalled. On a
resume (§3.4) the slot continues from what :func:`~card.renewal.resume.decide_resume` finds.

Never writes a certificate that does not match the key in the slot.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from card.certificates import fit_certificate_object, key_matches
from card.csr import build_csr
from card.enrollment.base import IssuedCertificate, IssuerRejected, RenewalGrant, RequestSigner, RetryRefused
from card.errors import ApduError, CardError, NotSupportedError, StateFileError
from card.issued_checks import (
    CertificateMismatchError,
    card_expiry_limit,
    check_renewal_certificate,
    issued_by_one_of,
)
from card.journal import Journal, JournalStep, SlotJournal
from card.piv import KeyType
from card.renewal.authorise import Authoriser
from card.renewal.context import RenewalContext, ask_ca
from card.renewal.keys import TokenKeys
from card.renewal.plan import journal_old_certificate, request_signer_slot
from card.renewal.records import RunRecords
from card.renewal.results import EndedBeforeChange, RenewalRefused, RenewalStep
from card.renewal.resume import Resume, decide_resume
from card.renewal.signer import CardSigner
from card.token import KeyRef, Token

DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM


class KeySteps(Protocol):
    """The per-key steps of a run: :class:`SlotSteps` (the PIV order) or, on a token whose keys can live
    side by side (``token.info.side_by_side``), ``card.renewal.beside``'s; the engine picks one in
    ``Renewal._key_steps`` and calls only this."""

    def renew_slot(self, ref: KeyRef, sj: SlotJournal, journal: Journal) -> x509.Certificate:
        """Take the key at ``ref`` from its journalled step to Done; return the certificate it then has."""
        ...


class SlotSteps:
    """The steps of one key in the PIV order (``token.info.side_by_side`` False: the new key replaces the
    old one at the same :class:`~card.token.KeyRef`), with what the run learnt in preflight.

    Args:
        card_expiry: the card's CHUID expiration date (no certificate may be valid past it), or None.
        on_card: on a resume, the certificate each journalled slot held when this run read the card.
    """

    def __init__(self, token: Token, keys: TokenKeys, ctx: RenewalContext, signer: CardSigner,
                 records: RunRecords, authoriser: Authoriser, card_expiry: dt.date | None,
                 on_card: dict[str, x509.Certificate | None]) -> None:
        self.token = token
        self.keys = keys
        self.ctx = ctx
        self.signer = signer
        self.records = records
        self.authoriser = authoriser
        self.card_expiry = card_expiry
        self.on_card = on_card

    def renew_slot(self, ref: KeyRef, sj: SlotJournal, journal: Journal) -> x509.Certificate:
        """Take the key at ``ref`` from its journalled step to Done; return the certificate it then holds.

        Raises:
            EndedBeforeChange: the card refused GENERATE and the old key still answers.
            RenewalRefused, CertificateMismatchError, CertificateTooLargeError, IssuerError,
            StateFileError, CardError: the journal keeps the slot resumable where it can be.
        """
        if sj.step == JournalStep.DONE and sj.certificate_pem:
            return x509.load_pem_x509_certificate(sj.certificate_pem.encode())
        if sj.step not in (JournalStep.PLANNED, JournalStep.AUTHORISED):
            finished = self._resume(ref, sj, journal)
            if finished is not None:
                return finished
        if sj.grant is None:
            raise RenewalRefused(f"slot {ref.hex}: no renewal grant")
        new_key = self.generate(ref, sj, journal)
        return self.issue_write(ref, new_key, sj, journal)

    def _resume(self, ref: KeyRef, sj: SlotJournal, journal: Journal) -> x509.Certificate | None:
        """Continue an interrupted slot from what it holds now; None: go on with GENERATE."""
        decision = decide_resume(self.signer, ref, sj)
        if decision.action is Resume.WRITE:
            assert decision.certificate is not None and decision.key is not None
            # as journalled (a certificate already issued is written without asking the CA again),
            # or renewed already (it is on the card: finish with the read-back and the test signature)
            held = self.on_card.get(ref.hex)
            on_card = held is not None and held.public_bytes(DER) == decision.certificate.public_bytes(DER)
            return self.write_and_check(ref, decision.certificate, decision.key, sj, journal, on_card=on_card)
        if decision.action is Resume.ISSUE:
            assert decision.key is not None
            return self.issue_write(ref, decision.key, sj, journal)
        if decision.action is Resume.START_OVER:
            assert decision.certificate is not None
            self.authoriser.authorise_again(journal, ref, decision.certificate, sj)
        elif decision.action is Resume.GONE:
            raise RenewalRefused(f"slot {ref.hex}: the old key is gone and no renewal grant is left",
                                 next_step=f"Contact {self.ctx.settings.ra_contact} with reference {journal.reference}.")
        # Resume.GENERATE: unknown key in the slot (generation interrupted): generate again with the grant.
        return None

    def generate(self, ref: KeyRef, sj: SlotJournal, journal: Journal) -> PublicKeyTypes:
        """GENERATE (destructive): journalled before and after. Write access was given in preflight
        (:meth:`Token.log_in_admin`); the token asks for it again if the card forgot it."""
        sj.step = JournalStep.GENERATING
        sj.public_key_pem = sj.csr_pem = sj.certificate_pem = None
        self.ctx.journals.save(journal)
        self.ctx.reporter.step(ref.piv_slot, RenewalStep.GENERATING)
        try:
            new_key = self.token.generate_key(ref, self.signer.key_types[ref])
        except (NotSupportedError, ApduError) as exc:
            self._end_if_unchanged(ref, sj, exc)
            raise
        self.signer.slot_key_types[ref] = self.signer.key_types[ref]
        sj.public_key_pem = new_key.public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        sj.step = JournalStep.GENERATED
        self.records.save_progress(journal)
        return new_key

    def _end_if_unchanged(self, ref: KeyRef, sj: SlotJournal, exc: CardError) -> None:
        """GENERATE was refused: when the old key still answers (a test signature verified with the old
        certificate), nothing changed in the slot — raise :class:`EndedBeforeChange` (the journal ends).
        Otherwise return, and the caller re-raises (the journal keeps the slot resumable)."""
        if not sj.old_certificate_pem:
            return
        old = journal_old_certificate(sj)
        try:
            unchanged = self.signer.slot_key_is(ref, [old.public_key()]) == 0
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
                f"slot {ref.hex}: the card refused to generate a new key ({exc}); nothing was changed",
                next_step=f"Nothing was changed on your card. Contact {self.ctx.settings.ra_contact} with the "
                          "reference shown.")
        raise EndedBeforeChange(error) from exc

    def issue_write(self, ref: KeyRef, new_key: PublicKeyTypes, sj: SlotJournal, journal: Journal) -> x509.Certificate:
        """CSR signed by the card → issue → verify → journal "issued" → write and check."""
        assert sj.grant is not None
        grant = RenewalGrant.from_dict(sj.grant)
        old_cert = journal_old_certificate(sj)
        self.ctx.reporter.step(ref.piv_slot, RenewalStep.REQUESTING)
        csr = self._request(ref, grant, new_key, old_cert, sj)
        self.ctx.reporter.step(ref.piv_slot, RenewalStep.ISSUING)
        issued = self._issue(ref, grant, csr, new_key, sj, journal)
        self.ctx.reporter.step(ref.piv_slot, RenewalStep.VERIFYING)
        self.check_issued(ref, issued, new_key, old_cert)
        sj.certificate_pem = issued.certificate.public_bytes(PEM).decode()
        assert sj.grant is not None
        sj.grant = {k: v for k, v in sj.grant.items() if k != "secret"}  # the RA's one-time challenge is spent
        sj.step = JournalStep.ISSUED
        self.records.save_progress(journal)
        return self.write_and_check(ref, issued.certificate, new_key, sj, journal)

    def _request(self, ref: KeyRef, grant: RenewalGrant, new_key: PublicKeyTypes, old_cert: x509.Certificate,
                 sj: SlotJournal) -> x509.CertificateSigningRequest:
        """The CSR (RFC 2986) for the new key, signed on the card, with the old subject and alternative
        names (a CA may copy them from the CSR) and the RA's challenge when the issuer has one."""
        challenge = self.ctx.issuer.challenge_password(grant)
        try:  # ask for the old subject *and* alternative names (a CA may copy them from the CSR)
            san = old_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = None
        csr = build_csr(old_cert.subject, new_key, lambda m: self.signer.sign(ref, m), challenge_password=challenge,
                        alternative_names=san)
        if challenge is None:  # a CSR carrying a challenge password is a secret: never journalled
            sj.csr_pem = csr.public_bytes(PEM).decode()
        del challenge
        return csr

    def _issue(self, ref: KeyRef, grant: RenewalGrant, csr: x509.CertificateSigningRequest, new_key: PublicKeyTypes,
               sj: SlotJournal, journal: Journal) -> IssuedCertificate:
        """``issuer.issue`` with the card key, the request signer and the card's expiry; the journal
        says "request sent" first, for a resume."""
        assert sj.grant is not None
        card_key = self.signer.card_key(ref, new_key)
        request_signer = self.request_signer(ref)
        limit = card_expiry_limit(self.card_expiry)  # an issuer that can, issues within the card's own life
        if not grant.request_sent:  # from here on the CA may issue before we hear back: say so for a resume
            sj.grant = {**sj.grant, "request_sent": "1"}
            self.records.save_progress(journal)
        try:
            return ask_ca(self.ctx, lambda: self.ctx.issuer.issue(grant, csr, new_key, card_key=card_key,
                                                                  request_signer=request_signer, not_after_limit=limit))
        except IssuerRejected as exc:
            if not isinstance(exc, RetryRefused):  # the CA answered this request: nothing is waiting there
                sj.grant = {k: v for k, v in sj.grant.items() if k != "request_sent"}
            raise

    def request_signer(self, ref: KeyRef) -> RequestSigner | None:
        """The other key's current certificate and card key, when the issuer signs renewal requests
        with them (read from the card now: it may have been renewed earlier in this run)."""
        signer = request_signer_slot(self.ctx.issuer, ref, self.keys)
        if signer is None:
            return None
        cert = self.token.certificate(signer).certificate
        if cert is None:
            raise RenewalRefused(f"slot {signer.hex} holds no certificate to sign the renewal request for slot {ref.hex}")
        kt = KeyType.of(cert.public_key())
        return RequestSigner(cert, self.signer.card_key(signer, cert.public_key(), kt))

    def check_issued(self, ref: KeyRef, issued: IssuedCertificate, new_key: PublicKeyTypes,
                     old: x509.Certificate) -> None:
        """Before anything is written: the key, identity, powers, validity (card expiry) and the chain
        (DESIGN §3 step 3; :mod:`card.issued_checks`).

        Raises:
            CertificateMismatchError: naming what does not match.
        """
        cert = issued.certificate
        if not key_matches(cert, new_key):
            raise CertificateMismatchError(f"slot {ref.hex}: the CA returned a certificate for a different key")
        if not issued_by_one_of(cert, self.ctx.issuer.ca_certificates()):
            raise CertificateMismatchError(f"slot {ref.hex}: the new certificate does not chain to the certificate "
                                           "authority")
        check_renewal_certificate(ref.hex, old, cert, card_expiry=self.card_expiry, now=self.ctx.now())

    def write_and_check(self, ref: KeyRef, cert: x509.Certificate, key: PublicKeyTypes, sj: SlotJournal,
                        journal: Journal, *, on_card: bool = False) -> x509.Certificate:
        """PUT DATA (unless ``on_card``: the card already holds exactly ``cert``), read back, test signature.

        Raises:
            CertificateMismatchError: ``cert`` is not ``key``'s (nothing written), or the test signature fails.
            CertificateTooLargeError: the card's own capacity is smaller than configured.
            CardError: the read-back differs; StateFileError: the final journal save failed.
        """
        if not key_matches(cert, key):  # never write a certificate that does not match the slot's key
            raise CertificateMismatchError(f"slot {ref.hex}: certificate and key do not match; not written")
        der = cert.public_bytes(DER)
        if not on_card:
            self._put_certificate(ref, der)
            sj.step = JournalStep.WRITTEN
            self.records.save_progress(journal)
        self.ctx.reporter.step(ref.piv_slot, RenewalStep.READING_BACK)
        back = self.token.certificate(ref)
        if back.certificate is None or back.certificate.public_bytes(DER) != der:
            raise CardError(f"slot {ref.hex}: the certificate read back differs from the one written")
        self.ctx.reporter.step(ref.piv_slot, RenewalStep.TEST_SIGNATURE)
        if self.signer.slot_key_is(ref, [cert.public_key()]) != 0:
            raise CertificateMismatchError(f"slot {ref.hex}: the test signature does not verify with the new certificate")
        self._journal_done(ref, cert, sj, journal)
        self.ctx.reporter.step(ref.piv_slot, RenewalStep.DONE)
        return cert

    def _put_certificate(self, ref: KeyRef, der: bytes) -> None:
        """Write the certificate (F05: its size checked before anything is sent; the token maps the
        card's own "too large" answer to CertificateTooLargeError)."""
        fit_certificate_object(der, self.ctx.settings.max_certificate_bytes)  # F05: before writing
        self.ctx.reporter.step(ref.piv_slot, RenewalStep.WRITING)
        self.token.write_certificate(ref, der, ref.label)

    def _journal_done(self, ref: KeyRef, cert: x509.Certificate, sj: SlotJournal, journal: Journal) -> None:
        """Journal "done"; the audit record rides in the same atomic save: if the log cannot take it,
        the next run writes it."""
        sj.step = JournalStep.DONE
        sj.error = None
        old = journal_old_certificate(sj) if sj.old_certificate_pem else None
        record = self.records.audit_record(journal, ref, old, cert, "renewed", None)
        journal.audit_pending.append(record)
        try:
            self.records.save_progress(journal)
        except StateFileError:  # the file still says "written": the next run finishes this slot and audits it
            journal.audit_pending.remove(record)
            sj.step = JournalStep.WRITTEN
            raise
