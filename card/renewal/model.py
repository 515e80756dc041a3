"""The read model: what the Card tab, ``status`` and the update check show of a card (DESIGN §1.2–1.3).

Plain frozen values made by :func:`card.renewal.reading.read_card`; no card access here.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from card.config import SlotSetting
from card.issued_checks import card_expiry_limit
from card.certificates import fingerprint, public_key_der
from card.journal import Journal, JournalStep, SlotJournal
from card.piv import KeyType, Slot
from card.token import KeyRef, TokenInfo, TokenInterface


class SlotState(enum.Enum):
    """What the update check concludes about one slot."""

    OK = "valid"
    DUE = "due for renewal"
    EXPIRED = "expired"
    EMPTY = "empty"
    UNREADABLE = "unreadable"



@dataclass(frozen=True)
class KeySetting:
    """A key of a PKCS#11 token that is renewed (issue 14): one certificate whose private key is on
    the token, chosen by ``[card] keys`` (label or CKA_ID; default: every one). The counterpart of a
    configured PIV slot (:class:`card.config.SlotSetting`)."""

    ref: KeyRef

    @property
    def label(self) -> str:
        """The certificate's CKA_LABEL."""
        return self.ref.label

    @property
    def slot(self) -> Slot:
        """The PIV slot of the key (a PKCS#11 module over a PIV card).

        Raises:
            ValueError: a key of a side-by-side token, which is in no PIV slot.
        """
        return self.ref.piv_slot


@dataclass(frozen=True)
class SlotStatus:
    """One slot (PIV) or key (PKCS#11) as read from the card, with the update check's conclusion."""

    setting: SlotSetting | KeySetting
    certificate: x509.Certificate | None
    error: str | None
    state: SlotState
    days_left: int | None
    note: str | None = None
    """Something to know about a readable certificate, e.g. a negative serial number (it is renewed as usual)."""
    key_matches: bool | None = None
    """Whether the slot's private key is the certificate's (GET METADATA's public key, no PIN; Yubico
    extension): False is a slot that cannot sign for its certificate; None: not known (plain PIV)."""

    @property
    def slot(self) -> Slot:
        """The PIV slot. Raises ValueError for a key of a side-by-side token (use :attr:`key`)."""
        return self.setting.slot

    @property
    def key(self) -> KeyRef:
        """Where the certificate and its key are: the PKCS#11 key, or the PIV slot's."""
        if isinstance(self.setting, KeySetting):
            return self.setting.ref
        return KeyRef.piv(self.setting.slot, self.setting.label)

    @property
    def name(self) -> str:
        """The key's name as the journal, ``status`` and the Card tab give it: ``"9A"`` (PIV slot), or
        the CKA_ID in hex (``"01"``)."""
        return self.key.hex


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
    token: TokenInfo | None = None
    """Who the card or token is, as the token said it (issue 14); None: a PIV card read over APDUs
    that gave none (:attr:`info` then describes it)."""

    def replaced_expiry(self, key: str) -> dt.datetime | None:
        """When the certificate an unfinished update is replacing on slot or key ``key`` (``"9A"``,
        a ``CKA_ID`` in hex) expires, from the journal — the card may hold the new one already; None
        when no unfinished update names it."""
        entry = self.pending_journal.slots.get(key) if self.pending_journal is not None else None
        if entry is None or not entry.old_certificate_pem:
            return None
        try:
            return x509.load_pem_x509_certificate(entry.old_certificate_pem.encode()).not_valid_after_utc
        except ValueError:
            return None

    @property
    def info(self) -> TokenInfo:
        """The card or token (label, manufacturer, model, serial, renewal mode) the logon pane, the
        Card tab and ``status`` name: :attr:`token`, else a PIV card (serial: its GUID in hex)."""
        if self.token is not None:
            return self.token
        return TokenInfo(TokenInterface.PIV, "PIV card", "", "", (self.card_id or "").upper(), side_by_side=False,
                         reader=self.reader)

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


def slot_condition(summary: CardSummary, s: SlotStatus, ra_contact: str) -> tuple[str, str] | None:
    """``("unfinished" | "key_mismatch", words with the next step)`` for a slot that cannot sign for the
    certificate it shows (break-it findings 2 and 4), else None.

    ``unfinished``: an unfinished update (the card's pending journal) replaced — or, stopped during
    GENERATE, may have replaced — the slot's key and the slot still shows the old certificate.
    ``key_mismatch``: the card's own metadata (GET METADATA, no PIN; Yubico cards) gives a public key
    that is not the certificate's."""
    journal = summary.pending_journal
    if summary.info.side_by_side:  # the new key is made beside the old one, which keeps working (tester F-20)
        journal = None
    sj = journal.slots.get(s.name) if journal is not None else None
    if journal is not None and sj is None and s.key.slot is not None:  # libykcs11: key 01, journalled as 9A
        sj = journal.slots.get(s.key.slot.hex)
    if (journal is not None and sj is not None and sj.in_progress and s.certificate is not None
            and fingerprint(s.certificate) == sj.old_fingerprint):
        replaced = "may have been replaced" if sj.step == JournalStep.GENERATING else "was replaced"
        return "unfinished", (f"does not work until the unfinished update (reference {journal.reference}) is "
                              f"finished: its key {replaced} and the certificate shown belongs to the old key. "
                              "Run `cardrenew renew` to finish it.")
    if journal is not None and sj is not None and s.certificate is not None and holds_generated_key(sj, s.certificate):
        return "unfinished", (f"does not work until the unfinished update (reference {journal.reference}) is "
                              "finished: its key was replaced and the certificate shown is a placeholder the token "
                              "wrote for the new key. Run `cardrenew renew` to finish it.")
    if s.key_matches is False:
        return "key_mismatch", (f"does not work: the key in slot {s.name} does not match its certificate (an "
                                "update was interrupted after its new key was made, or another tool changed the "
                                "key). Run `cardrenew renew`: it finishes an interrupted update whose record was "
                                f"kept; if it answers KEY-MISMATCH, contact {ra_contact}: the slot must be re-issued.")
    return None


def holds_generated_key(sj: SlotJournal, cert: x509.Certificate) -> bool:
    """Whether ``cert`` holds the key this journal's GENERATE made: a certificate we did not write
    but that only our key's owner could have been given — libykcs11's placeholder, which its
    ``C_GenerateKeyPair`` writes into the slot at once (a self-signed "YubiKey PIV Slot 9a",
    serial 0). A resume treats the slot as one whose certificate is not written yet; the test
    signature then decides (DESIGN §3.4); ``status`` and the Card tab say the slot does not work
    until the update is finished (:func:`slot_condition`)."""
    if not (sj.in_progress and sj.public_key_pem):
        return False
    ours = serialization.load_pem_public_key(sj.public_key_pem.encode())
    return public_key_der(ours) == public_key_der(cert.public_key())

