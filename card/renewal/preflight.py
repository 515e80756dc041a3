"""Preflight (DESIGN §3 step 1): everything the engine checks before anything on the card changes —
the card's own expiry, what is due, the issuer's pinned CA, the key algorithm the card and the CA
accept, the certificate size, and the request-signer slots of SCEP RenewalReq. Each refusal says
nothing was changed and whom to contact.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from card import words
from card.certificates import fingerprint
from card.config import Settings, SlotSetting
from card.errors import NotSupportedError
from card.issued_checks import card_expiry_limit
from card.journal import Journal, SlotJournal
from card.piv import KeyType, Slot
from card.piv.quirks import card_lists_key_type
from card.renewal.context import RenewalContext, ask_ca
from card.renewal.keys import TokenKeys
from card.renewal.model import CardSummary, SlotState, SlotStatus, card_expiry_status
from card.renewal.plan import SlotPlan, journal_old_certificate, old_certificate, request_signer_slot
from card.renewal.results import CardExpiredError, RenewalRefused, SlotResult
from card.renewal.signer import CardSigner
from card.token import KeyRef, Token

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER
CERTIFICATE_GROWTH_BYTES = 256
"""Room a renewed certificate may need beyond the old one's size (longer serial, signature, dates)."""


def refuse_expired_card(summary: CardSummary, settings: Settings, now: Callable[[], dt.datetime]) -> None:
    """DESIGN §3 step 1; FIPS 201-3 §4.1.4.1: a certificate may not outlive its card. ``now``: the clock.

    Raises:
        CardExpiredError: the card's CHUID expiration date has passed.
    """
    limit = card_expiry_limit(summary.card_expiry)
    if limit is not None and limit < now():
        assert summary.card_expiry is not None
        raise CardExpiredError(
            f"this card expired on {summary.card_expiry:%Y-%m-%d} (its CHUID expiration date); a certificate "
            "may not outlive its card, so it cannot be renewed; nothing was changed",
            next_step=f"Contact {settings.ra_contact}: the card must be replaced.")


def new_journal(summary: CardSummary, settings: Settings, now: dt.datetime, changed: list[SlotResult]) -> Journal:
    """The journal of a new run: one entry per due slot, each holding the certificate it renews.

    Args:
        changed: slots of an older journal set aside in this run (their words join "up to date").

    Raises:
        CardExpiredError: the card itself expires within the renewal window and something is due.
        RenewalRefused: a certificate has expired, only unreadable slots, or nothing is due.
    """
    assert summary.card_id is not None
    ending = card_expiry_status(summary.card_expiry, settings.window_days, now)
    if ending == "ending" and (summary.due or summary.expired):
        assert summary.card_expiry is not None
        raise CardExpiredError(
            f"your card itself expires on {summary.card_expiry:%Y-%m-%d} (its CHUID expiration date), within "
            f"the {settings.window_days}-day renewal window; a certificate may not outlive its card, so a "
            "renewal would only shorten your certificates; nothing was changed",
            next_step=f"Contact {settings.ra_contact} for a new card.")
    if summary.expired:
        raise RenewalRefused(words.expired(words.slot_names(summary.expired)),
                             next_step=f"Contact {settings.ra_contact}.")
    unreadable = [s for s in summary.slots if s.state is SlotState.UNREADABLE]
    if not summary.due and unreadable:
        raise RenewalRefused(f"{words.slot_names(unreadable)} holds an unreadable object, not a certificate; it cannot be renewed here",
                             next_step=f"Contact {settings.ra_contact}: the slot must be re-issued.")
    if not summary.due:
        nxt = summary.next_renewal_date(settings.window_days)
        notes = "".join(f"; {r.error}" for r in changed)
        raise RenewalRefused(words.up_to_date(nxt) + notes, next_step="Nothing to do now.")
    journal = Journal(summary.card_id)
    for status in summary.due:
        assert status.certificate is not None
        journal.slots[status.slot.hex] = SlotJournal(
            status.slot.hex, fingerprint(status.certificate), old_certificate_pem=status.certificate.public_bytes(PEM).decode())
    return journal


class SlotPreflight:
    """The checks against the CA and per slot, after the PIN and the management key were accepted.

    Args:
        card_key_types: the algorithms the card lists (SELECT's APT), or None when it does not say.
    """

    def __init__(self, ctx: RenewalContext, token: Token, keys: TokenKeys, signer: CardSigner,
                 card_key_types: set[KeyType] | None) -> None:
        self.ctx = ctx
        self.token = token
        self.keys = keys
        self.signer = signer
        self.card_key_types = card_key_types

    def check_issuer(self) -> None:
        """Raises RenewalRefused when no CA certificate of the issuer matches ``issuer.ca_fingerprint``."""
        cas = ask_ca(self.ctx, self.ctx.issuer.ca_certificates)
        pinned = self.ctx.settings.issuer.ca_fingerprint
        if pinned and not any(fingerprint(ca) == pinned for ca in cas):
            raise RenewalRefused("the certificate authority's certificate does not match the pinned fingerprint; "
                                 "nothing was changed", next_step=f"Contact {self.ctx.settings.ra_contact}.")

    def plan(self, journal: Journal, by_slot: dict[Slot, SlotStatus]) -> list[SlotPlan]:
        """One :class:`SlotPlan` per journalled slot, in journal order; sets the key type each slot gets.

        Raises:
            NotSupportedError: the card or the CA cannot take the key type.
            RenewalRefused: a renewed certificate may not fit the card, or the key type is unknown.
        """
        settings = self.ctx.settings
        plan: list[SlotPlan] = []
        for name, sj in journal.slots.items():
            ref = self.keys.named(name)
            slot = ref.piv_slot  # the PIV order: every key is in a slot
            status = by_slot.get(slot)
            setting = status.setting if status else SlotSetting(slot, slot.name.title())
            old = old_certificate(status, sj)
            self.signer.key_types[ref] = self.key_type_for(ref, old, sj)
            if old is not None:
                self.signer.slot_key_types[ref] = KeyType.of(old.public_key())
            if old is not None and len(old.public_bytes(DER)) + CERTIFICATE_GROWTH_BYTES > settings.max_certificate_bytes:
                raise RenewalRefused(f"slot {ref.hex}: a renewed certificate may not fit the card "
                                     f"({settings.max_certificate_bytes} bytes)")
            plan.append(SlotPlan(setting, old, sj, ref))
        return plan

    def key_type_for(self, ref: KeyRef, old: x509.Certificate | None, sj: SlotJournal) -> KeyType:
        """The key type the key at ``ref`` gets at GENERATE: ``renewal.key_type``, else the old key's type (F13).

        Raises:
            NotSupportedError: the card (by its APT) or the CA does not take it.
            RenewalRefused: it cannot be determined.
        """
        if self.ctx.settings.key_type is not None:
            kt = self.ctx.settings.key_type
        elif old is not None:
            kt = KeyType.of(old.public_key())
        elif sj.public_key_pem:
            kt = KeyType.of(serialization.load_pem_public_key(sj.public_key_pem.encode()))
        elif sj.old_certificate_pem:
            kt = KeyType.of(journal_old_certificate(sj).public_key())
        else:
            raise RenewalRefused(f"slot {ref.hex}: the key type cannot be determined")
        if not card_lists_key_type(self.card_key_types, kt):  # F13: ask the card first
            raise NotSupportedError(f"this card cannot generate {kt.name} keys (it lists "
                                    f"{', '.join(sorted(k.name for k in self.card_key_types or ())) or 'none'}); "
                                    "nothing was changed")
        if kt.name not in self.ctx.issuer.supported_key_types():
            raise NotSupportedError(f"the certificate authority cannot certify {kt.name} keys; nothing was changed")
        return kt

    def check_request_signers(self, plan: list[SlotPlan], by_slot: dict[Slot, SlotStatus]) -> None:
        """Before anything changes: every slot's request signer (SCEP RenewalReq) holds an RSA
        certificate that is valid now (or is renewed in this run before it has to sign) and the
        key in that slot matches it (a test signature).

        Any order of the plan works: a signer slot is either untouched, already renewed in this run
        (new key and certificate on the card), or not yet started (old key and certificate intact);
        the engine stops at the first failure, so it is never caught between GENERATE and PUT DATA.

        Raises:
            RenewalRefused: naming the signer slot and what is wrong with it.
        """
        planned = {entry.ref for entry in plan}
        now = self.ctx.now()
        checked: set[KeyRef] = set()
        for entry in plan:
            signer = request_signer_slot(self.ctx.issuer, entry.ref, self.keys)
            if signer is None:
                continue
            status = by_slot.get(signer.slot) if signer.slot is not None else None
            why = self._signer_problem(signer, status, now, planned, checked)
            checked.add(signer)
            if why:
                raise RenewalRefused(f"a renewal request for slot {entry.slot.hex} is signed with the "
                                     f"certificate in slot {signer.hex}, but {why}; nothing was changed",
                                     next_step=f"Contact {self.ctx.settings.ra_contact}: slot {signer.hex} must hold "
                                               "a working RSA certificate, or the CA must be set to PKCSReq.")

    def _signer_problem(self, signer: KeyRef, status: SlotStatus | None, now: dt.datetime, planned: set[KeyRef],
                        checked: set[KeyRef]) -> str | None:
        """What is wrong with request-signer key ``signer`` (None: nothing)."""
        # a slot outside renewal.slots is not in the summary: read it from the card
        cert = status.certificate if status is not None else self.token.certificate(signer).certificate
        if cert is None:
            return f"slot {signer.hex} holds no certificate"
        if not isinstance(cert.public_key(), rsa.RSAPublicKey):
            return (f"slot {signer.hex} holds an {KeyType.of(cert.public_key()).name} key and the CA's reply "
                    "is encrypted to the signer (RSA only)")
        if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc and signer not in planned:
            return f"the certificate in slot {signer.hex} is not valid now"
        if signer not in checked and self.signer.slot_key_is(signer, [cert.public_key()]) != 0:
            return f"the key in slot {signer.hex} does not match its certificate"
        return None
