"""Reading a card without the PIN (SELECT, CHUID, the configured slots, the PIN tries left) into
the read model, and matching an unfinished journal to the card (DESIGN §3.4). Everything goes
through the :class:`~card.token.Token` protocol; the PIV-only reads (SELECT's algorithm list, the
CHUID) are the token's optional answers (None on a token without them)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from card.certificates import SlotCertificate, days_left, fingerprint, holder_name, key_matches
from card.config import Settings, SlotSetting
from card.journal import FINAL_STEPS, Journal, JournalStore, SlotJournal
from card.piv import PivSession, Slot
from card.renewal.admin import as_token
from card.renewal.keys import TokenKeys
from card.renewal.beside_resume import is_leftover_label
from card.renewal.model import CardSummary, KeySetting, SlotState, SlotStatus, holds_generated_key
from card.token import KeyRef, Token, TokenCertificate, TokenInterface


def card_id_for(token: Token, certificates: Mapping[Any, x509.Certificate | None]) -> tuple[str | None, str | None, dt.date | None]:
    """(card id, GUID text, card expiry): the CHUID GUID; on a PKCS#11 token with a serial number
    ``p11-`` and a digest of its manufacturer, model and serial (the renewal changes the certificates,
    so they cannot name the journal: a side-by-side renewal deletes them, and libykcs11 replaces a
    slot's certificate by a placeholder at GENERATE); else a fingerprint of the first certificate.

    Raises:
        CardRemovedError.
    """
    identity = token.card_identity()
    if identity is not None:
        return identity.guid.hex().upper(), identity.guid_text, identity.expiry
    info = token.info
    if info.interface is TokenInterface.PKCS11 and info.serial.strip():  # stable while the renewal replaces certificates
        token_id = hashlib.sha256(f"{info.manufacturer}\0{info.model}\0{info.serial}".encode()).hexdigest()[:32]
        return "p11-" + token_id.upper(), None, None
    for cert in certificates.values():
        if cert is not None:
            return "cert-" + fingerprint(cert)[:32], None, None
    return None, None, None


def read_card(card: Token | PivSession, settings: Settings, *, now: dt.datetime | None = None,
              journals: JournalStore | None = None, reader: str = "", pin_retries: bool = True,
              key_metadata: bool = True) -> CardSummary:
    """SELECT PIV and read CHUID, the configured slots and the PIN tries left (no PIN needed).

    ``card``: the token (a bare PivSession is read as ``card.renewal.admin.piv_token(card, settings)``).

    A slot that cannot be decoded becomes ``SlotState.UNREADABLE`` with its error text (F15).

    ``pin_retries`` is None when the PIN is already verified and 0 when it is blocked.

    Args:
        pin_retries: ask the card for the PIN tries left (an empty VERIFY, 1 APDU). The renewal
            engine passes False: it sends the PIN itself right after, and a blocked PIN answers
            that VERIFY with ``69 83`` without spending a try; the summary's ``pin_retries`` is then None.
        key_metadata: ask the card whether each slot's key is its certificate's (GET METADATA, 1 APDU
            per certificate; :attr:`SlotStatus.key_matches`). The renewal engine passes False: it
            proves the keys it needs with test signatures, and a renewal's APDU count stays as it was.

    Raises:
        CardRemovedError, ApduError (no PIV application).
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    token = as_token(card, settings)
    keys = TokenKeys(token)
    card_key_types = token.start()
    statuses: list[SlotStatus] = []
    certs: dict[Slot, x509.Certificate | None] = {}
    read: dict[str, x509.Certificate | None] = {}
    for setting, ref, sc in _keys_to_read(token, keys, settings):
        read[ref.hex] = sc.certificate
        if ref.slot is not None:
            certs[ref.slot] = sc.certificate
        status = slot_status(setting, sc, settings, now)
        if key_metadata and sc.certificate is not None:
            status = replace(status, key_matches=_key_matches(token, ref, sc.certificate))
        statuses.append(status)
    card_id, guid_text, expiry = card_id_for(token, read)
    # blocked: 0, the card is still shown and logon says whom to contact; None: the PIN is verified now
    retries = token.pin_tries_left() if pin_retries else None
    holder = _holder(statuses)
    pending, stale, current, finished = _journal_of(token, keys, journals, card_id, certs)
    return CardSummary(reader, card_id, guid_text, expiry, holder, tuple(statuses), retries, pending,
                       card_key_types, stale, current, finished, token=token.info)


def _keys_to_read(token: Token, keys: TokenKeys, settings: Settings
                  ) -> list[tuple[SlotSetting | KeySetting, KeyRef, TokenCertificate]]:
    """What the read model shows, in order: a PIV card's configured slots (``renewal.slots``); a
    PKCS#11 token's certificates chosen by ``[card] keys`` (label or CKA_ID; default every one) whose
    private key is on the token (``has_private_key`` None — hidden until the PIN — counts; False
    does not), leaving out the objects of an unfinished side-by-side update (``(renewing)``,
    ``(superseded …)`` labels), which its journal names; keys in PIV slots (a module over a PIV card)
    in slot order, the others by label, then CKA_ID."""
    if not settings.token.is_pkcs11:
        out: list[tuple[SlotSetting | KeySetting, KeyRef, TokenCertificate]] = []
        for setting in settings.slots:
            ref = keys.of_slot(setting.slot)
            out.append((setting, ref, token.certificate(ref)))
        return out
    chosen = [(KeySetting(held.ref), held.ref, held) for held in token.certificates()
              if held.has_private_key is not False and not is_leftover_label(held.ref.label)
              and settings.token.selects(held.ref.label, held.ref.key_id)]
    # a token lists in no fixed order: PIV slots in slot order (9A first), other keys by label
    return sorted(chosen, key=lambda c: (c[1].slot is None, int(c[1].slot or 0), c[1].label, c[1].key_id))


def _key_matches(token: Token, ref: KeyRef, cert: x509.Certificate) -> bool | None:
    """Whether the key at ``ref`` is ``cert``'s, by the public key the token gives without a PIN (PIV: GET
    METADATA; None: the token does not say — plain PIV — or the key is of a type we cannot compare)."""
    key = token.public_key(ref)
    if key is None:
        return None
    try:
        return key_matches(cert, key)
    except Exception:  # noqa: BLE001 - a certificate key we cannot compare: not known
        return None


def slot_status(setting: SlotSetting | KeySetting, sc: SlotCertificate | TokenCertificate, settings: Settings,
                now: dt.datetime) -> SlotStatus:
    """One configured slot as read (``sc``) with the update check's conclusion at ``now``."""
    if sc.error:
        return SlotStatus(setting, None, sc.error, SlotState.UNREADABLE, None)
    if sc.certificate is None:
        return SlotStatus(setting, None, None, SlotState.EMPTY, None)
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
    return SlotStatus(setting, sc.certificate, too_long, state, left, sc.note)


def _journal_of(token: Token, keys: TokenKeys, journals: JournalStore | None, card_id: str | None,
                certs: dict[Slot, x509.Certificate | None]
                ) -> tuple[Journal | None, Journal | None, dict[str, x509.Certificate | None], bool]:
    """The card's journal as (pending, stale, the certificate each journalled slot holds, finished).

    DESIGN §3.4: the journal is matched by the GUID *and* each slot's certificate fingerprint; a
    journal none of whose unfinished slots matches is stale (never resumed)."""
    pending = journals.load(card_id) if journals is not None and card_id else None
    finished = pending is not None and pending.finished
    if finished:
        pending = None
    stale = None
    current: dict[str, x509.Certificate | None] = {}
    if pending is not None:
        for name in pending.slots:
            try:
                ref = keys.named(name)
            except ValueError:
                continue
            slot = ref.slot
            current[name] = certs[slot] if slot is not None and slot in certs else token.certificate(ref).certificate
        if not any(journal_slot_matches(sj, current.get(name)) for name, sj in pending.slots.items()
                   if sj.step not in FINAL_STEPS):
            stale, pending = pending, None
    return pending, stale, current, finished


def journal_slot_matches(sj: SlotJournal, cert: x509.Certificate | None) -> bool:
    """Whether a journalled slot may still be as the journal left it, judged by the certificate it
    holds now: one the journal expects (the old one, or the one issued), or — for a slot whose
    GENERATE was sent — none readable (a torn write) or one for the generated key (a module's
    placeholder, :func:`holds_generated_key`); the test signature decides at resume."""
    if cert is None:
        return sj.in_progress
    return fingerprint(cert) in sj.expected_fingerprints() or holds_generated_key(sj, cert)


def _holder(statuses: list[SlotStatus]) -> str | None:
    """The holder's name from the first CA-issued certificate; from a self-signed one (libykcs11's
    placeholder "YubiKey PIV Slot 9a" after a stopped update) only when no other certificate names one."""
    certificates = [s.certificate for s in statuses if s.certificate is not None]
    issued = [c for c in certificates if c.issuer != c.subject]
    for cert in issued or certificates:
        return holder_name(cert)
    return None
