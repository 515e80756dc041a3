"""Issue 11 items 1–4: a card is never left worse than it was — resume proves the card is as journalled,
no resume loops, the CA's certificate is checked against the old one, and the card's own expiry counts.

Each test reproduces a failure seen on main bbbe978 and shows the new behaviour."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from card.certificates import encode_certificate_object, key_matches
from card.config import Settings
from card.emulator.card import SoftPivCard, install_key
from card.emulator.create import create_card_state
from card.enrollment.base import IssuedCertificate, IssuerRejected, IssuerUnavailable
from card.enrollment.local import LocalCA
from card.errors import NotSupportedError
from card.issued_checks import CertificateMismatchError, WrongIdentityError
from card.journal import AuditLog, JournalStore
from card.piv import OBJECT_CHUID, KeyType, PivSession, Slot, build_chuid
from card.secret import Secret
from card.renewal import (CardExpiredError, RenewalContext, RenewalRefused, SlotChangedError, UpdateCheck, read_card,
                          renew, update_check)

PIN = "123456"
A, C = Slot.AUTHENTICATION, Slot.SIGNATURE


def context(tmp_path: Path, issuer: object, **settings: object) -> RenewalContext:
    s = Settings(state_dir=tmp_path / "state", **settings)  # type: ignore[arg-type]
    return RenewalContext(s, issuer, JournalStore(s.state_dir), AuditLog(s.state_dir / "audit.log"),  # type: ignore[arg-type]
                          issuer_retry_delays_s=())


def private_pem(card: SoftPivCard, slot: Slot) -> str:
    return card.state.keys[slot.hex].private_pem


def certificate_on(card: SoftPivCard, slot: Slot) -> x509.Certificate:
    session = PivSession(card)
    session.select()
    cert = session.read_certificate(slot).certificate
    assert cert is not None
    return cert


def slot_works(card: SoftPivCard, slot: Slot) -> bool:
    key = serialization.load_pem_private_key(private_pem(card, slot).encode(), None)
    return key_matches(certificate_on(card, slot), key.public_key())


def audit(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "state" / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def journals(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "state").glob("journal-*.json"))


def set_aside(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "state").glob("journal-*.set-aside-*"))


def reissue(card: SoftPivCard, ca: LocalCA, slot: Slot, days: int = 700) -> x509.Certificate:
    """What the RA (or another renewal tool) does: a new key on the card and a new valid certificate."""
    old = certificate_on(card, slot)
    key = ec.generate_private_key(ec.SECP256R1())
    install_key(card.state, slot, key, KeyType.ECCP256)
    now = dt.datetime.now(dt.timezone.utc)
    cert = ca.issue_initial(old.subject, key.public_key(), slot.hex, now - dt.timedelta(hours=1),
                            now + dt.timedelta(days=days), "alex.example@example.org")
    card.state.objects[slot.object_id.hex().upper()] = encode_certificate_object(
        cert.public_bytes(serialization.Encoding.DER)).hex().upper()
    return cert


class LostAnswerCA:
    """Delegates to the CA, but the answer to ``issue`` never arrives (IssuerUnavailable) while ``down``."""

    def __init__(self, ca: LocalCA) -> None:
        self.ca, self.name, self.down = ca, "lossy CA", True
        self.cancel = threading.Event()  # the Issuer protocol's cancellation token

    def ca_certificates(self):  # type: ignore[no-untyped-def]
        return self.ca.ca_certificates()

    def supported_key_types(self):  # type: ignore[no-untyped-def]
        return self.ca.supported_key_types()

    def authorize_renewal(self, *args):  # type: ignore[no-untyped-def]
        return self.ca.authorize_renewal(*args)

    def request_signer_slot(self, slot):  # type: ignore[no-untyped-def]
        return None

    def challenge_password(self, grant):  # type: ignore[no-untyped-def]
        return None

    def issue(self, grant, csr, new_key, card_key=None, *, request_signer=None, not_after_limit=None):  # type: ignore[no-untyped-def]
        if self.down:
            raise IssuerUnavailable("the answer was lost")
        return self.ca.issue(grant, csr, new_key)


# -- item 1: resume proves the card is as journalled ------------------------------------------------
def test_resume_does_not_regenerate_a_slot_the_ra_reissued_after_generate(ca: LocalCA, tmp_path: Path) -> None:
    """9A is interrupted after GENERATE (the CA's answer lost); the RA then re-issues 9A on the card.
    bbbe978 generated a key in 9A again and left its certificate not matching; now 9A is left alone,
    the journal is set aside and the user and the audit log are told, and 9C is still renewed."""
    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256))
    lossy = LostAnswerCA(ca)
    first = renew(PivSession(card), context(tmp_path, lossy), Secret(PIN))
    assert isinstance(first.slots[0].error, IssuerUnavailable) and first.journal_kept
    ra_cert = reissue(card, ca, A)
    ra_key = private_pem(card, A)
    old_9c_key = private_pem(card, C)

    lossy.down = False
    summary = read_card(PivSession(card), context(tmp_path, lossy).settings, journals=context(tmp_path, lossy).journals)
    assert update_check(summary) is UpdateCheck.RESUME  # 9C is still as journalled
    resumed = renew(PivSession(card), context(tmp_path, lossy), Secret(PIN))

    assert private_pem(card, A) == ra_key and certificate_on(card, A) == ra_cert  # left alone
    assert slot_works(card, A)
    by_slot = {r.slot: r for r in resumed.slots}
    assert by_slot[C].renewed and private_pem(card, C) != old_9c_key and slot_works(card, C)
    assert isinstance(by_slot[A].error, SlotChangedError)
    words = str(by_slot[A].error)
    assert "changed by someone else" in words and "left alone" in words and first.reference in words
    assert set_aside(tmp_path) and not journals(tmp_path)  # the journal kept under another name; nothing to resume
    lines = [e for e in audit(tmp_path) if e["outcome"] == "changed_elsewhere"]
    assert [(e["slot"], e["reference"]) for e in lines] == [("9A", first.reference)]
    assert lines[0]["new_serial"] == f"{ra_cert.serial_number:X}"


def test_resume_leaves_9c_renewed_elsewhere_after_a_stop(ca: LocalCA, tmp_path: Path) -> None:
    """The holder stops after 9A; another tool renews 9C. bbbe978 resumed and generated over 9C's new key
    without a test signature; now the journal no longer matches the card: it is set aside, 9C untouched."""
    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256))
    ctx = dataclasses.replace(context(tmp_path, ca), between_slots=lambda result: False)
    first = renew(PivSession(card), ctx, Secret(PIN))
    assert first.slots[0].renewed and not first.slots[1].renewed and first.journal_kept
    other_cert = reissue(card, ca, C)
    other_key = private_pem(card, C)

    summary = read_card(PivSession(card), ctx.settings, journals=ctx.journals)
    assert update_check(summary) is UpdateCheck.UP_TO_DATE  # not offered as a resume
    with pytest.raises(RenewalRefused) as exc:
        renew(PivSession(card), context(tmp_path, ca), Secret(PIN))
    assert "up to date" in str(exc.value) and "slot 9C was changed by someone else" in str(exc.value)
    assert private_pem(card, C) == other_key and certificate_on(card, C) == other_cert
    assert set_aside(tmp_path) and not journals(tmp_path)
    assert [e["slot"] for e in audit(tmp_path) if e["outcome"] == "changed_elsewhere"] == ["9C"]


def test_resume_after_the_certificate_was_written_finishes_without_writing_again(ca: LocalCA, tmp_path: Path) -> None:
    """Stopped right after PUT DATA (journal still says "issued"): the card holds the issued certificate,
    so the resume finishes with the test signature — renewed already — and writes nothing."""
    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256))
    ctx = context(tmp_path, ca)
    import card.renewal.steps as engine

    real = engine.SlotSteps.write_and_check
    calls = {"n": 0}

    def write_then_stop(self, slot, cert, key, sj, journal, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:  # 9C: the card takes the certificate, then the process stops before journalling
            self.token.write_certificate(slot, cert.public_bytes(serialization.Encoding.DER), slot.label)  # slot: a KeyRef
            raise KeyboardInterrupt
        return real(self, slot, cert, key, sj, journal, **kw)

    engine.SlotSteps.write_and_check = write_then_stop  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            renew(PivSession(card), ctx, Secret(PIN))
    finally:
        engine.SlotSteps.write_and_check = real  # type: ignore[method-assign]
    start = len(card.trace)
    assert renew(PivSession(card), ctx, Secret(PIN)).ok
    assert not [a for a, _ in card.trace[start:] if a[1] == 0xDB and not a[0] & 0x10 or a[1] == 0x47]
    assert slot_works(card, A) and slot_works(card, C) and not journals(tmp_path)


# -- item 2: no resume loops -------------------------------------------------------------------------
def refuse_generate(card: SoftPivCard, alg: int) -> None:
    """The card lists ``alg`` in SELECT but answers GENERATE for it with 6A 80."""
    inner = card.process_apdu

    def process(apdu: bytes) -> bytes:
        if len(apdu) > 9 and apdu[1] == 0x47 and apdu[5:10] == bytes([0xAC, 0x03, 0x80, 0x01, alg]):
            card.apdu_count += 1
            card.trace.append((apdu, 0x6A80))
            return b"\x6a\x80"
        return inner(apdu)

    card.process_apdu = process  # type: ignore[method-assign]


def test_generate_refused_for_a_listed_algorithm_ends_the_journal(ca: LocalCA, tmp_path: Path) -> None:
    """SELECT lists P-384, GENERATE answers 6A 80. bbbe978 kept the journal at "generating" and said
    "run renew again" (exit 13) forever; now: exit 11's error, "nothing was changed", no journal."""
    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP384))
    refuse_generate(card, 0x14)
    before = ({k: v.private_pem for k, v in card.state.keys.items()}, dict(card.state.objects))
    ctx = context(tmp_path, ca)
    for _ in range(2):  # the second run is not a resume: the same clear refusal
        with pytest.raises(NotSupportedError) as exc:
            renew(PivSession(card), ctx, Secret(PIN))
        assert "nothing was changed" in str(exc.value) and "Nothing was changed" in exc.value.next_step
        assert "again" not in exc.value.next_step and exc.value.reference
        assert not journals(tmp_path)
        assert update_check(read_card(PivSession(card), ctx.settings, journals=ctx.journals)) is UpdateCheck.AVAILABLE
    assert ({k: v.private_pem for k, v in card.state.keys.items()}, dict(card.state.objects)) == before
    from tui.cli import EXIT_REFUSED
    from tui.cli.failure import exit_code_for

    assert exit_code_for(exc.value) == EXIT_REFUSED
    assert [e["outcome"] for e in audit(tmp_path)] == ["refused", "refused"]


def test_ca_refusing_a_resumed_authorisation_ends_the_journal(ca_dir: Path, tmp_path: Path) -> None:
    """Stopped after 9A; the CA then refuses 9C's authorisation (9C's old key intact). The journal ends:
    exit 12 "nothing was changed", and the next run is not offered as a resume."""
    ca = LocalCA(ca_dir)
    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256))
    ctx = dataclasses.replace(context(tmp_path, ca), between_slots=lambda result: False)
    assert renew(PivSession(card), ctx, Secret(PIN)).journal_kept
    key_9c = private_pem(card, C)
    refusing = context(tmp_path, LocalCA(ca_dir, refuse_reason="renewals suspended"))
    with pytest.raises(IssuerRejected):
        renew(PivSession(card), refusing, Secret(PIN))
    assert not journals(tmp_path) and private_pem(card, C) == key_9c and slot_works(card, C)
    assert update_check(read_card(PivSession(card), ctx.settings, journals=ctx.journals)) is UpdateCheck.AVAILABLE


# -- item 3: the issued certificate is checked against the old one -----------------------------------
UPN = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


class MisissuingCA(LostAnswerCA):
    """Issues for the right key and subject, but gets the identity or the powers wrong."""

    def __init__(self, ca: LocalCA, fault: str) -> None:
        super().__init__(ca)
        self.down, self.fault = False, fault

    def issue(self, grant, csr, new_key, card_key=None, *, request_signer=None, not_after_limit=None):  # type: ignore[no-untyped-def]
        old = x509.load_der_x509_certificate(self.ca._db().execute(
            "SELECT old_cert FROM grants WHERE grant_id = ?", (grant.grant_id,)).fetchone()[0])
        now = dt.datetime.now(dt.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(self.ca.cert.subject)
                   .public_key(new_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=700)))
        for ext in old.extensions:
            if ext.oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME and self.fault in ("admin-upn", "email-dropped"):
                continue
            if ext.oid in (ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE) and self.fault == "ca":
                continue
            builder = builder.add_extension(ext.value, ext.critical)
        if self.fault == "admin-upn":
            der_upn = b"\x0c" + bytes([len(b"admin@example.org")]) + b"admin@example.org"
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.OtherName(UPN, der_upn)]), False)
        if self.fault == "ca":
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), True)
        return IssuedCertificate(builder.sign(self.ca.key, hashes.SHA384()), (self.ca.cert,))


@pytest.mark.parametrize("fault,words", [
    ("admin-upn", "it adds UPN:admin@example.org; it drops email:alex.example@example.org"),
    ("ca", "a CA certificate (basicConstraints CA:TRUE)"),
    ("email-dropped", "it drops email:alex.example@example.org"),
])
def test_a_certificate_for_another_identity_or_a_ca_is_never_written(ca: LocalCA, tmp_path: Path, fault: str,
                                                                      words: str) -> None:
    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256))
    objects = dict(card.state.objects)
    key_9c = private_pem(card, C)
    result = renew(PivSession(card), context(tmp_path, MisissuingCA(ca, fault)), Secret(PIN))
    error = result.slots[0].error
    assert isinstance(error, WrongIdentityError) and words in str(error) and "not written" in str(error)
    assert "Registration Authority" in error.next_step and "Do not try again" in error.next_step
    assert result.reference.startswith("CR-")
    assert card.state.objects == objects and private_pem(card, C) == key_9c  # never written; 9C untouched


class CsrCopyingCA(MisissuingCA):
    """Like scepserver: subject and alternative names come from the CSR, the rest from its profile."""

    def issue(self, grant, csr, new_key, card_key=None, *, request_signer=None, not_after_limit=None):  # type: ignore[no-untyped-def]
        now = dt.datetime.now(dt.timezone.utc)
        self.csrs = [*getattr(self, "csrs", []), csr]
        builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(self.ca.cert.subject)
                   .public_key(new_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=700))
                   .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False))
        for ext in csr.extensions:
            builder = builder.add_extension(ext.value, ext.critical)
        return IssuedCertificate(builder.sign(self.ca.key, hashes.SHA384()), (self.ca.cert,))


def test_the_csr_asks_for_the_old_subject_and_alternative_names(ca: LocalCA, tmp_path: Path) -> None:
    """bbbe978's CSR carried no SAN, so a CA copying from the CSR dropped the e-mail address."""
    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256, slots=(A,)))
    old = certificate_on(card, A)
    issuer = CsrCopyingCA(ca, "none")
    result = renew(PivSession(card), context(tmp_path, issuer, slots=(Settings().slots[0],)), Secret(PIN))
    assert result.ok, result
    san = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert issuer.csrs[0].subject == old.subject
    assert issuer.csrs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value == san
    new = certificate_on(card, A)
    assert new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == san


# -- item 4: the card's own expiry --------------------------------------------------------------------
def set_card_expiry(card: SoftPivCard, expiry: dt.date) -> None:
    card.state.objects[OBJECT_CHUID.hex().upper()] = build_chuid(bytes(range(16)), expiry).hex().upper()


def test_an_expired_card_is_refused_in_preflight(ca: LocalCA, tmp_path: Path) -> None:
    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256))
    set_card_expiry(card, dt.date.today() - dt.timedelta(days=2))
    before = ({k: v.private_pem for k, v in card.state.keys.items()}, dict(card.state.objects))
    with pytest.raises(CardExpiredError) as exc:
        renew(PivSession(card), context(tmp_path, ca), Secret(PIN))
    assert "expired on" in str(exc.value) and "Registration Authority" in exc.value.next_step
    assert ({k: v.private_pem for k, v in card.state.keys.items()}, dict(card.state.objects)) == before
    assert not [a for a, _ in card.trace if a[1] in (0x20, 0x47, 0xDB)]  # no PIN sent, nothing generated or written
    from tui.cli import EXIT_REFUSED
    from tui.cli.failure import exit_code_for

    assert exit_code_for(exc.value) == EXIT_REFUSED


class LongValidityCA(MisissuingCA):
    """A CA that ignores the card's expiry: a faithful renewal valid for two more years."""

    def issue(self, grant, csr, new_key, card_key=None, *, request_signer=None, not_after_limit=None):  # type: ignore[no-untyped-def]
        self.fault = "none"
        return super().issue(grant, csr, new_key, card_key)


def test_a_certificate_outliving_the_card_is_refused_and_the_local_ca_stays_within_it(ca: LocalCA,
                                                                                        tmp_path: Path) -> None:
    expiry = dt.date.today() + dt.timedelta(days=200)
    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256))
    set_card_expiry(card, expiry)
    objects = dict(card.state.objects)
    result = renew(PivSession(card), context(tmp_path / "long", LongValidityCA(ca, "none")), Secret(PIN))
    error = result.slots[0].error
    assert isinstance(error, CertificateMismatchError) and "past this card's own expiry" in str(error)
    assert card.state.objects == objects

    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256))
    set_card_expiry(card, expiry)
    assert renew(PivSession(card), context(tmp_path / "local", ca), Secret(PIN)).ok
    for slot in (A, C):
        new = certificate_on(card, slot)
        assert new.not_valid_after_utc.date() <= expiry
        assert new.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=190)


# -- break-it round: other ways a CA gets the certificate wrong ----------------------------------------
class ExtensionAddingCA(MisissuingCA):
    """A faithful renewal, then one more fault: an extension added, or the subject merged into one RDN."""

    def issue(self, grant, csr, new_key, card_key=None, *, request_signer=None, not_after_limit=None):  # type: ignore[no-untyped-def]
        fault, self.fault = self.fault, "none"
        issued = super().issue(grant, csr, new_key, card_key).certificate
        self.fault = fault
        builder = (x509.CertificateBuilder().issuer_name(issued.issuer).public_key(new_key)
                   .serial_number(issued.serial_number).not_valid_before(issued.not_valid_before_utc)
                   .not_valid_after(issued.not_valid_after_utc))
        subject = issued.subject
        if fault == "multi-rdn":
            subject = x509.Name([x509.RelativeDistinguishedName(list(issued.subject))])
        builder = builder.subject_name(subject)
        for ext in issued.extensions:
            builder = builder.add_extension(ext.value, ext.critical)
        extra = {
            "critical-unknown": (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00"), True),
            "name-constraints": (x509.NameConstraints([x509.DNSName("example.org")], None), True),
            "policy-constraints": (x509.PolicyConstraints(0, None), True),
            "inhibit-any-policy": (x509.InhibitAnyPolicy(0), True),
            "policy": (x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier("2.16.840.1.101.3.2.1.3.7"),
                                                                       None)]), False),
            "aia": (x509.AuthorityInformationAccess([x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier("http://ca.example/ca.crt"))]),
                False),
            "noncritical-unknown": (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.6"), b"\x05\x00"), False),
        }.get(fault)
        if extra is not None:
            builder = builder.add_extension(*extra)
        return IssuedCertificate(builder.sign(self.ca.key, hashes.SHA384()), (self.ca.cert,))


@pytest.mark.parametrize("fault,words", [
    ("critical-unknown", "an unknown critical extension (OID 1.2.3.4.5)"),
    ("name-constraints", "with nameConstraints (OID 2.5.29.30), an extension for CA certificates only"),
    ("policy-constraints", "with policyConstraints"),
    ("inhibit-any-policy", "with inhibitAnyPolicy"),
    ("policy", "other certificate policies (2.16.840.1.101.3.2.1.3.7 instead of none (extension absent))"),
    ("multi-rdn", "for another subject"),
])
def test_a_certificate_with_wrong_extensions_or_a_merged_subject_is_never_written(ca: LocalCA, tmp_path: Path,
                                                                                   fault: str, words: str) -> None:
    """Break-it on 3d0e64d: these were written and called renewed (an unknown critical extension then
    fails `openssl verify` with "unhandled critical extension")."""
    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256))
    objects, keys = dict(card.state.objects), {k: v.private_pem for k, v in card.state.keys.items()}
    result = renew(PivSession(card), context(tmp_path, ExtensionAddingCA(ca, fault)), Secret(PIN))
    error = result.slots[0].error
    assert not result.ok
    assert isinstance(error, WrongIdentityError) and words in str(error) and "not written" in str(error), error
    assert "Registration Authority" in error.next_step and result.reference.startswith("CR-")
    assert card.state.objects == objects  # no certificate written
    assert private_pem(card, C) == keys[C.hex]  # 9C untouched


@pytest.mark.parametrize("fault", ["aia", "noncritical-unknown", "none"])
def test_a_new_issuer_link_or_a_non_critical_private_extension_is_accepted(ca: LocalCA, tmp_path: Path,
                                                                           fault: str) -> None:
    """The AIA may change with the CA; a non-critical extension is ignored by who does not know it."""
    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256))
    result = renew(PivSession(card), context(tmp_path, ExtensionAddingCA(ca, fault)), Secret(PIN))
    assert result.ok, result
    assert slot_works(card, A) and slot_works(card, C)
