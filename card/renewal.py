"""The renewal engine (DESIGN §3): preflight, authorise every due slot while the old keys
exist, then per slot generate → CSR signed on the card → issue → verify → PUT DATA → read back
→ test signature, journalling each step; and resume from the journal.

Synchronous; runs on the card worker thread. It never logs or stores the PIN or the
management key; it never writes a certificate that does not match the key in the slot.
"""

from __future__ import annotations

import dataclasses

import datetime as dt
import enum
import inspect
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from card.certificates import (
    days_left,
    fingerprint,
    fit_certificate_object,
    holder_name,
    key_matches,
    load_certificate_pem,
    public_key_der,
    verify_signature,
)
from card.config import Settings, SlotSetting
from card.csr import build_csr
from card.issued_checks import CertificateMismatchError, card_expiry_limit, check_renewal_certificate
from card.mgmtkey import authenticate_with_configured_key
from card.enrollment.base import (CardKey, IssuedCertificate, Issuer, IssuerError, IssuerRejected, IssuerUnavailable,
                                   RenewalGrant, RequestSigner, RetryRefused)
from card.errors import (
    ApduError,
    CardError,
    CardRemovedError,
    CertificateTooLargeError,
    NotSupportedError,
    OperationCancelled,
    PinBlockedError,
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
    AuditLog,
    Journal,
    JournalStore,
    SlotJournal,
    prepare_state_files,
)
from card.piv import KeyType, PivSession, Slot, parse_supported_key_types
from card.secret import Secret, require_secret

logger = logging.getLogger(__name__)
T = TypeVar("T")

DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM


class SlotState(enum.Enum):
    """What the update check concludes about one slot."""

    OK = "valid"
    DUE = "due for renewal"
    EXPIRED = "expired"
    EMPTY = "empty"
    UNREADABLE = "unreadable"


class RenewalStep(enum.Enum):
    """Progress steps reported to the UI, in order."""

    PREFLIGHT = "Checking the card"
    AUTHORISING = "Authorising with the certificate authority"
    PENDING = "Pending"
    GENERATING = "Generating a new key on the card"
    REQUESTING = "Signing the certificate request"
    ISSUING = "Waiting for the certificate authority"
    VERIFYING = "Checking the new certificate"
    WRITING = "Writing"
    READING_BACK = "Reading back"
    TEST_SIGNATURE = "Test signature"
    DONE = "Done"
    FAILED = "Failed"


class RenewalRefused(CardError):
    """Renewal cannot start (nothing was changed): expired certificate, nothing due, bad preflight."""

    title = "Renewal not possible"
    code = "REFUSED"


class SlotChangedError(CardError):
    """A slot of an unfinished update holds a certificate that update did not write (DESIGN §3.4):
    someone else changed it (the RA re-issued it, another tool renewed it). It is left alone."""

    title = "Changed by someone else"
    code = "CHANGED"
    next_step = ("Nothing was done to this certificate. If you did not expect it to change, contact your "
                 "Registration Authority (RA) with the reference shown.")


class CardExpiredError(RenewalRefused):
    """The card's own expiry (CHUID expiration date, SP 800-73-4 Part 1 Table 9 tag 0x35) has passed."""

    title = "This card has expired"
    code = "CARD-EXPIRED"


class _EndedBeforeChange(Exception):
    """Internal: the card or the CA refused this slot's step before anything in the slot changed."""

    def __init__(self, error: CardError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class SlotStatus:
    """One slot as read from the card, with the update check's conclusion."""

    setting: SlotSetting
    certificate: x509.Certificate | None
    error: str | None
    state: SlotState
    days_left: int | None
    note: str | None = None
    """Something to know about a readable certificate, e.g. a negative serial number (it is renewed as usual)."""

    @property
    def slot(self) -> Slot:
        return self.setting.slot


@dataclass(frozen=True)
class CardSummary:
    """What the Card tab shows: holder, card id, each configured slot, PIN tries left."""

    reader: str
    card_id: str | None
    guid_text: str | None
    card_expiry: dt.date | None
    holder: str | None
    slots: tuple[SlotStatus, ...]
    pin_retries: int | None
    pending_journal: Journal | None = None
    card_key_types: set[KeyType] | None = None
    """Algorithms the card says it supports (SELECT's APT); None when it does not say."""
    stale_journal: Journal | None = None
    """An unfinished journal of this card (same GUID) none of whose unfinished slots holds a certificate
    it expects: every one was changed by someone else. Never resumed; the engine sets it aside."""
    journal_certificates: dict[str, x509.Certificate | None] = field(default_factory=dict)
    """The certificate each slot of the card's journal holds now (None: empty or unreadable)."""
    finished_journal: bool = False
    """A journal of this card is on disk with every slot finished (a run stopped before removing it)."""

    @property
    def due(self) -> list[SlotStatus]:
        return [s for s in self.slots if s.state is SlotState.DUE]

    @property
    def expired(self) -> list[SlotStatus]:
        return [s for s in self.slots if s.state is SlotState.EXPIRED]

    def next_renewal_date(self, window_days: int) -> dt.date | None:
        """First day on which some valid certificate enters the renewal window."""
        dates = [s.certificate.not_valid_after_utc - dt.timedelta(days=window_days)
                 for s in self.slots if s.certificate is not None and s.state is SlotState.OK]
        return min(dates).date() if dates else None


class UpdateCheck(enum.Enum):
    """The conclusion of *Update My Card* (DESIGN §1.3)."""

    AVAILABLE = "updates are available for your card"
    UP_TO_DATE = "your card is up to date"
    EXPIRED = "a certificate has expired"
    RESUME = "an unfinished update can be resumed"
    NOTHING_TO_RENEW = "the card holds no certificate to renew"


def update_check(summary: CardSummary) -> UpdateCheck:
    """Decide what *Update My Card* offers for this card."""
    if summary.pending_journal is not None:
        return UpdateCheck.RESUME
    if summary.expired:
        return UpdateCheck.EXPIRED
    if summary.due:
        return UpdateCheck.AVAILABLE
    if any(s.certificate is not None for s in summary.slots):
        return UpdateCheck.UP_TO_DATE
    return UpdateCheck.NOTHING_TO_RENEW


class RenewalReporter(Protocol):
    """Receives progress from the worker thread; implementations must be thread-safe."""

    def step(self, slot: Slot | None, step: RenewalStep, detail: str = "") -> None: ...

    def slot_finished(self, slot: Slot, result: SlotResult) -> None: ...


class NullReporter:
    """A reporter that ignores everything (headless callers that want no progress)."""

    def step(self, slot: Slot | None, step: RenewalStep, detail: str = "") -> None:
        pass

    def slot_finished(self, slot: Slot, result: SlotResult) -> None:
        pass


@dataclass
class SlotResult:
    """The outcome of one slot: renewed (``new_certificate``), failed (``error``) or not attempted."""

    slot: Slot
    label: str
    old_certificate: x509.Certificate | None
    new_certificate: x509.Certificate | None = None
    error: CardError | None = None

    @property
    def renewed(self) -> bool:
        return self.new_certificate is not None and self.error is None


@dataclass
class RenewalResult:
    """The outcome of a whole renewal."""

    reference: str
    slots: list[SlotResult] = field(default_factory=list)
    error: CardError | None = None
    journal_kept: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.renewed for s in self.slots)

    @property
    def left_alone(self) -> list[SlotResult]:
        """Slots changed by someone else since an unfinished update (:class:`SlotChangedError`): they
        hold a certificate that is not ours to renew, and were rightly left alone."""
        return [s for s in self.slots if isinstance(s.error, SlotChangedError)]

    @property
    def ours_renewed(self) -> bool:
        """Every slot that was ours to renew was renewed (at least one); slots changed by someone else
        were left alone. The CLI reports this as "renewed" (exit 0) with a note per left-alone slot."""
        return (self.error is None and any(s.renewed for s in self.slots)
                and all(s.renewed or isinstance(s.error, SlotChangedError) for s in self.slots))


def card_expiry_status(card_expiry: dt.date | None, window_days: int, now: dt.datetime) -> str | None:
    """The card's own expiry (CHUID expiration date, SP 800-73-4 Part 1 Table 9 tag 0x35) against the
    renewal window: ``"expired"`` (passed), ``"ending"`` (within ``window_days`` of ``now``: no renewal
    can outlive the certificates it replaces, FIPS 201-3 §4.1.4.1), or None (later, or not stated)."""
    limit = card_expiry_limit(card_expiry)
    if limit is None:
        return None
    if limit < now:
        return "expired"
    if limit - now <= dt.timedelta(days=window_days):
        return "ending"
    return None


def card_expiry_words(card_expiry: dt.date | None, window_days: int, now: dt.datetime, ra_contact: str) -> str | None:
    """What ``status`` and the Card tab say about the card's own expiry when it is within the renewal
    window or passed (None otherwise): the date and whom to contact for a new card."""
    state = card_expiry_status(card_expiry, window_days, now)
    if state == "expired":
        return (f"This card itself expired on {card_expiry:%Y-%m-%d}: its certificates cannot be renewed. "
                f"Contact {ra_contact} for a new card.")
    if state == "ending":
        return (f"This card itself expires on {card_expiry:%Y-%m-%d}: its certificates cannot be renewed past "
                f"that date. Contact {ra_contact} for a new card.")
    return None


def card_id_for(session: PivSession, certificates: dict[Slot, x509.Certificate | None]) -> tuple[str | None, str | None, dt.date | None]:
    """(card id, GUID text, card expiry): the CHUID GUID, else a fingerprint of the first certificate."""
    try:
        chuid = session.read_chuid()
    except CardRemovedError:
        raise
    except CardError:
        chuid = None
    if chuid is not None:
        return chuid.guid_hex, chuid.guid_text, chuid.expiry
    for cert in certificates.values():
        if cert is not None:
            return "cert-" + fingerprint(cert)[:32], None, None
    return None, None, None


def read_card(session: PivSession, settings: Settings, *, now: dt.datetime | None = None,
              journals: JournalStore | None = None, reader: str = "", pin_retries: bool = True) -> CardSummary:
    """SELECT PIV and read CHUID, the configured slots and the PIN tries left (no PIN needed).

    A slot that cannot be decoded becomes ``SlotState.UNREADABLE`` with its error text (F15).

    ``pin_retries`` is None when the PIN is already verified and 0 when it is blocked.

    Args:
        pin_retries: ask the card for the PIN tries left (an empty VERIFY, 1 APDU). The renewal
            engine passes False: it sends the PIN itself right after, and a blocked PIN answers
            that VERIFY with ``69 83`` without spending a try; the summary's ``pin_retries`` is then None.

    Raises:
        CardRemovedError, ApduError (no PIV application).
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    card_key_types = parse_supported_key_types(session.select())
    statuses: list[SlotStatus] = []
    certs: dict[Slot, x509.Certificate | None] = {}
    for setting in settings.slots:
        sc = session.read_certificate(setting.slot)
        certs[setting.slot] = sc.certificate
        if sc.error:
            statuses.append(SlotStatus(setting, None, sc.error, SlotState.UNREADABLE, None))
            continue
        if sc.certificate is None:
            statuses.append(SlotStatus(setting, None, None, SlotState.EMPTY, None))
            continue
        left = days_left(sc.certificate, now)
        if sc.certificate.not_valid_after_utc <= now:
            state = SlotState.EXPIRED
        elif sc.certificate.not_valid_after_utc - now <= dt.timedelta(days=settings.window_days):
            state = SlotState.DUE
        else:
            state = SlotState.OK
        size = len(sc.certificate.public_bytes(serialization.Encoding.DER))
        too_long = (f"the certificate is {size} bytes, longer than this card's {settings.max_certificate_bytes}-byte "
                    "limit (card.max_certificate_bytes)") if size > settings.max_certificate_bytes else None
        statuses.append(SlotStatus(setting, sc.certificate, too_long, state, left, sc.note))
    card_id, guid_text, expiry = card_id_for(session, certs)
    retries: int | None = None
    if pin_retries:
        try:
            retries = session.get_pin_retries()
        except PinBlockedError:
            retries = 0  # blocked: the card is still shown, logon says whom to contact
    holder = None
    for status in statuses:
        if status.certificate is not None:
            holder = holder_name(status.certificate)
            break
    pending = journals.load(card_id) if journals is not None and card_id else None
    finished = pending is not None and pending.finished
    if finished:
        pending = None
    stale = None
    current: dict[str, x509.Certificate | None] = {}
    if pending is not None:
        # DESIGN §3.4: the journal is matched by the GUID *and* each slot's certificate fingerprint.
        for name in pending.slots:
            try:
                slot = Slot.parse(name)
            except ValueError:
                continue
            current[name] = certs[slot] if slot in certs else session.read_certificate(slot).certificate
        if not any(journal_slot_matches(sj, current.get(name)) for name, sj in pending.slots.items()
                   if sj.step not in FINAL_STEPS):
            stale, pending = pending, None
    return CardSummary(reader, card_id, guid_text, expiry, holder, tuple(statuses), retries, pending,
                       card_key_types, stale, current, finished)


def journal_slot_matches(sj: SlotJournal, cert: x509.Certificate | None) -> bool:
    """Whether a journalled slot may still be as the journal left it, judged by the certificate it
    holds now: one the journal expects (the old one, or the one issued), or — for a slot whose
    GENERATE was sent — none readable (a torn write; the test signature decides at resume)."""
    if cert is None:
        return sj.in_progress
    return fingerprint(cert) in sj.expected_fingerprints()


@dataclass
class RenewalContext:
    """What one renewal needs besides the card session. Holds the PIN for this run only (memory)."""

    settings: Settings
    issuer: Issuer
    journals: JournalStore
    audit: AuditLog
    reporter: RenewalReporter = field(default_factory=NullReporter)
    cancel: threading.Event = field(default_factory=threading.Event)
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.timezone.utc))
    issuer_retry_delays_s: tuple[float, ...] = (1.0, 3.0, 9.0)
    """Back-off between retries when the CA is unavailable (seconds); then the error path."""
    between_slots: Callable[[SlotResult], bool] = field(default=lambda result: True)
    """Called on the worker thread after each renewed certificate but the last (the portal's
    *Next*); returning False stops before the next certificate is touched."""


class _Renewal:
    """One run of the engine on one card (state kept across the steps of that run)."""

    def __init__(self, session: PivSession, ctx: RenewalContext, pin: Secret, summary: CardSummary | None = None) -> None:
        self.session = session
        self.ctx = ctx
        self._pin = require_secret(pin, "PIN")
        self._summary = summary
        """The card as the caller read it in this same card transaction (None: read it here)."""
        self._verified_at: int | None = None
        """``apdus_sent`` right after our last successful VERIFY: while no other command has been
        sent since, that VERIFY is still the one "immediately before" a PIN-always operation."""
        self.key_types: dict[Slot, KeyType] = {}
        self.guid: bytes | None = None
        self.card_key_types: set[KeyType] | None = None
        """Key type each slot gets at GENERATE (configured, or the old key's type)."""
        self._file_error: StateFileError | None = None
        """A journal save after GENERATE that went to the fallback directory: the run stops after this slot."""
        self.slot_key_types: dict[Slot, KeyType] = {}
        """Key type of the key the slot holds now: signatures use it (it differs from :attr:`key_types`
        until GENERATE when the configuration changes the type, F13)."""
        self.card_expiry: dt.date | None = None
        """The card's CHUID expiration date: no certificate may be valid past it."""
        self._ended: dict[Slot, CardError] = {}
        """Slots the CA refused at authorisation on a resume, before anything in them changed."""
        self._changed: list[SlotResult] = []
        self._refused_before_change: CardError | None = None
        self._on_card: dict[str, x509.Certificate | None] = {}
        """On a resume: the certificate each journalled slot held when this run read the card."""
        """Slots of the journal that someone else changed: left alone, reported after the others."""

    # -- card helpers --------------------------------------------------------------------
    def _verify_pin(self) -> None:
        self.session.verify_pin(self._pin)
        self._verified_at = self.session.protocol.apdus_sent

    def _verify_pin_always(self) -> None:
        """VERIFY for a PIN-always (9C) operation, unless our VERIFY was the very last command sent
        (piv-protocol.md §3.4, F08): the preflight VERIFY then serves the first such operation."""
        if self._verified_at is None or self._verified_at != self.session.protocol.apdus_sent:
            self._verify_pin()
        self._verified_at = None  # the operation that follows uses it up

    def sign(self, slot: Slot, message: bytes, key_type: KeyType | None = None) -> bytes:
        """Sign with the slot key (of ``key_type``, default: the key the slot holds now); VERIFY right
        before each 9C signature (PIN always, F08)."""
        if slot == Slot.SIGNATURE:
            self._verify_pin_always()
        kt = key_type or self.slot_key_types.get(slot) or self.key_types[slot]
        return self.session.sign(slot, kt, message)

    def _rsa_decipher(self, slot: Slot, block: bytes) -> bytes:
        if slot == Slot.SIGNATURE:
            self._verify_pin_always()
        return self.session.rsa_decipher(slot, block)

    def _slot_key_is(self, slot: Slot, candidates: list[PublicKeyTypes]) -> int | None:
        """Index of the candidate public key the slot's private key matches (test signature), or None."""
        challenge = os.urandom(32)
        for kt in dict.fromkeys(KeyType.of(key) for key in candidates):  # one signature per key type in play
            try:
                signature = self.sign(slot, challenge, kt)
            except ApduError as exc:
                if exc.sw in (0x6A88, 0x6A80, 0x6A82):
                    continue
                raise
            for i, key in enumerate(candidates):
                if KeyType.of(key) is kt and verify_signature(key, signature, challenge):
                    self.slot_key_types[slot] = kt
                    return i
        return None

    def _ca(self, call: Callable[[], T]) -> T:
        """Call the issuer; retry ``IssuerUnavailable`` with back-off (bounded, cancel-aware)."""
        delays = self.ctx.issuer_retry_delays_s
        for attempt in range(len(delays) + 1):
            try:
                return call()
            except IssuerUnavailable as exc:
                if attempt == len(delays):
                    raise
                if self.ctx.cancel.wait(delays[attempt]):  # SIGTERM/SIGINT during the back-off: stop now
                    raise OperationCancelled(f"stopped while waiting to ask the certificate authority again ({exc})") from exc
        raise AssertionError("unreachable")

    def _authenticate(self) -> None:
        """Management-key authentication; the card's own answer (``F7`` metadata) beats the configured algorithm (F14)."""
        s = self.ctx.settings
        card_alg = self.session.get_management_key_algorithm()
        if card_alg is not None and card_alg is not s.management_key_algorithm:
            s = dataclasses.replace(s, management_key_algorithm=card_alg)
        authenticate_with_configured_key(self.session, s, self.guid, s.management_key_algorithm)

    def _as_administrator(self, command: Callable[[], T]) -> T:
        """Send a command that needs the management key (GENERATE, PUT DATA). The authentication of
        preflight lasts for the card session, so it is not repeated before each such command; only
        when the card answers ``69 82`` (security status not satisfied: it has forgotten it) is the
        key authenticated once more and the command sent again. A refused command changed nothing
        on the card, so sending it again is safe. A reconnect ends the run (CardRemovedError), and
        the resumed run authenticates in its own preflight."""
        try:
            return command()
        except ApduError as exc:
            if exc.sw != 0x6982:
                raise
        logger.info("the card asked for the management key again (69 82); authenticating once more")
        self._authenticate()
        return command()

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
        self._prepare_state_files(summary)
        self.card_key_types = summary.card_key_types
        self.card_expiry = summary.card_expiry
        self.guid = bytes.fromhex(summary.card_id) if summary.card_id and not summary.card_id.startswith("cert-") else None
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
            self._verify_pin()
            self._authenticate()
        else:
            self._authenticate()
            self._verify_pin()
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
                if self._slot_key_is(Slot.parse(name), [ours]) == 0:
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
            self._audit(journal, slot, old, now_cert, "changed_elsewhere", error.code)
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
            self.key_types[slot] = self._key_type_for(slot, old, sj)
            if old is not None:
                self.slot_key_types[slot] = KeyType.of(old.public_key())
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
                                                                         lambda m, s=setting.slot: self.sign(s, m)))
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
            elif signer not in checked and self._slot_key_is(signer, [cert.public_key()]) != 0:
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
        return RequestSigner(cert, CardKey(cert.public_key(), lambda m: self.sign(signer, m, kt),
                                           lambda block: self._rsa_decipher(signer, block)))

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
                self._audit(journal, setting.slot, old, None, "refused", slot_result.error.code)
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
                    self._flush_journal_audit(journal)
                except StateFileError as exc:
                    self._save_quietly(journal)
                    result.error = exc
                    break
                if self._file_error is not None:  # the journal went to the fallback directory
                    result.error = self._file_error
                    break
                if slot_result is not result.slots[-1] and not ctx.between_slots(slot_result):
                    ctx.cancel.set()
            except _EndedBeforeChange as ended:
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
                self._save_quietly(journal)
                self._audit(journal, setting.slot, old, None, "refused", exc.code)
                ctx.reporter.step(setting.slot, RenewalStep.FAILED, str(exc))
                ctx.reporter.slot_finished(setting.slot, slot_result)
                result.error = result.error or exc
                break
            except CardRemovedError as exc:
                sj.error = str(exc)
                slot_result.error = exc
                self._audit(journal, setting.slot, old, None, "interrupted", exc.code)
                self._save_quietly(journal)
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
                self._audit(journal, setting.slot, old, None, "failed", exc.code)
                self._save_quietly(journal)  # a file error here is the one already reported
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

    # -- journal and audit writes (a file error never ends a run as "unexpected") ----------------
    def _prepare_state_files(self, summary: CardSummary) -> None:
        """Preflight of the state directory, journal and audit log, and the audit records an
        earlier run could not write, before anything is asked of the card or the CA.

        Raises:
            StateFileError: nothing was changed (exit 11).
        """
        assert summary.card_id is not None
        prepare_state_files(self.ctx.journals, self.ctx.audit, summary.card_id)
        if summary.pending_journal is not None:
            summary.pending_journal.audit_pending.clear()  # written by prepare_state_files just now

    def _save_progress(self, journal: Journal) -> None:
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
            self._file_error = self._file_error or exc

    def _save_quietly(self, journal: Journal) -> None:
        try:
            self.ctx.journals.save(journal)
        except StateFileError as exc:  # the error being reported is what the user must see
            logger.warning("could not save the journal: %s", exc)

    def _audit_record(self, journal: Journal, slot: Slot, old: x509.Certificate | None, new: x509.Certificate | None,
                      outcome: str, error_code: str | None) -> dict[str, object]:
        return self.ctx.audit.record(
            reference=journal.reference, card_guid=journal.card_id, slot=slot.hex, outcome=outcome, error_code=error_code,
            old_serial=f"{old.serial_number:X}" if old else None,
            old_not_after=old.not_valid_after_utc.isoformat() if old else None,
            new_serial=f"{new.serial_number:X}" if new else None,
            new_not_after=new.not_valid_after_utc.isoformat() if new else None,
        )

    def _audit(self, journal: Journal, slot: Slot, old: x509.Certificate | None, new: x509.Certificate | None,
               outcome: str, error_code: str | None) -> None:
        """Record an event of this renewal; never raises. A record the log cannot take stays in
        ``journal.audit_pending`` (the caller saves the journal) and is written by the next run."""
        journal.audit_pending.append(self._audit_record(journal, slot, old, new, outcome, error_code))
        try:
            self._flush_journal_audit(journal)
        except StateFileError as exc:
            logger.warning("audit record kept in the journal for the next run: %s", exc)

    def _flush_journal_audit(self, journal: Journal) -> None:
        """Append the journal's pending audit records (made in this run: not in the log yet).

        Raises:
            StateFileError: the log could not be written; the records stay pending.
        """
        while journal.audit_pending:
            self.ctx.audit.append(journal.audit_pending[0])
            journal.audit_pending.pop(0)

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
        if self.card_key_types is not None and kt not in self.card_key_types:  # F13: ask the card first
            raise NotSupportedError(f"this card cannot generate {kt.name} keys (it lists "
                                    f"{', '.join(sorted(k.name for k in self.card_key_types)) or 'none'}); "
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
            found = self._slot_key_is(slot, candidates) if candidates else None
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
                grant = self._ca(lambda: ctx.issuer.authorize_renewal(slot.hex, journal_old, lambda m: self.sign(slot, m)))
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
            new_key = self._as_administrator(lambda: self.session.generate_key(slot, self.key_types[slot]))
        except (NotSupportedError, ApduError) as exc:
            self._end_if_unchanged(slot, sj, exc)
            raise
        self.slot_key_types[slot] = self.key_types[slot]
        sj.public_key_pem = new_key.public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        sj.step = STEP_GENERATED
        self._save_progress(journal)
        return self._issue_write(slot, new_key, sj, journal)

    def _end_if_unchanged(self, slot: Slot, sj: SlotJournal, exc: CardError) -> None:
        """GENERATE was refused: when the old key still answers (a test signature verified with the old
        certificate), nothing changed in the slot — raise :class:`_EndedBeforeChange` (the journal ends).
        Otherwise return, and the caller re-raises (the journal keeps the slot resumable)."""
        if not sj.old_certificate_pem:
            return
        old = _journal_old_certificate(sj)
        try:
            unchanged = self._slot_key_is(slot, [old.public_key()]) == 0
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
        raise _EndedBeforeChange(error) from exc

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
        csr = build_csr(old_cert.subject, new_key, lambda m: self.sign(slot, m), challenge_password=challenge,
                        alternative_names=san)
        if challenge is None:  # a CSR carrying a challenge password is a secret: never journalled
            sj.csr_pem = csr.public_bytes(PEM).decode()
        del challenge
        ctx.reporter.step(slot, RenewalStep.ISSUING)
        card_key = CardKey(new_key, lambda m: self.sign(slot, m), lambda block: self._rsa_decipher(slot, block))
        request_signer = self._request_signer(slot)
        extra: dict[str, object] = {"request_signer": request_signer} if request_signer is not None else {}
        limit = card_expiry_limit(self.card_expiry)
        if limit is not None and _accepts(ctx.issuer.issue, "not_after_limit"):
            extra["not_after_limit"] = limit  # an issuer that can, issues within the card's own life
        if not grant.request_sent:  # from here on the CA may issue before we hear back: say so for a resume
            sj.grant = {**sj.grant, "request_sent": "1"}
            self._save_progress(journal)
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
        self._save_progress(journal)
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
                self._as_administrator(lambda: self.session.put_data(slot.object_id, value))
            except ApduError as exc:
                if exc.sw in (0x6A84, 0x6700):  # the card's own capacity is smaller than configured
                    raise CertificateTooLargeError(
                        f"slot {slot.hex}: certificate too large for this card ({len(der)} bytes; the card answered "
                        f"{exc.sw:04X})") from exc
                raise
            sj.step = STEP_WRITTEN
            self._save_progress(journal)
        ctx.reporter.step(slot, RenewalStep.READING_BACK)
        back = self.session.read_certificate(slot)
        if back.certificate is None or back.certificate.public_bytes(DER) != der:
            raise CardError(f"slot {slot.hex}: the certificate read back differs from the one written")
        ctx.reporter.step(slot, RenewalStep.TEST_SIGNATURE)
        if self._slot_key_is(slot, [cert.public_key()]) != 0:
            raise CertificateMismatchError(f"slot {slot.hex}: the test signature does not verify with the new certificate")
        sj.step = STEP_DONE
        sj.error = None
        # the audit record rides in the same atomic save: if the log cannot take it, the next run writes it
        record = self._audit_record(journal, slot, _journal_old_certificate(sj) if sj.old_certificate_pem else None,
                                    cert, "renewed", None)
        journal.audit_pending.append(record)
        try:
            self._save_progress(journal)
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


__all__ = [
    "CardExpiredError",
    "card_expiry_status",
    "card_expiry_words",
    "CardSummary",
    "CertificateMismatchError",
    "IssuerError",
    "RenewalContext",
    "RenewalRefused",
    "RenewalResult",
    "RenewalStep",
    "SlotChangedError",
    "SlotResult",
    "SlotState",
    "UpdateCheck",
    "read_card",
    "renew",
    "update_check",
]
