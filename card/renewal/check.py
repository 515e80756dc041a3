"""The dry run (issue 15): ``cardrenew renew --check`` and the Card tab's *Check* run every check a
renewal makes before it changes anything (DESIGN §3 step 1, and a dry mode of step 2's grant) and
report each as passed, failed (with the next step) or skipped (with why: usually no PIN given).
When the CA check failed, the checks that need the CA (the key algorithm's "the CA certifies it", the
renewal grants) are skipped and say why: the CA is asked once, so a silent one costs one
``issuer.timeout_s`` (tester F-10).

Two phases, so that a CA that does not answer holds no card: :meth:`DryRun.check_issuer` asks the
CA without the card (no retries: an installer wants the answer now), then :meth:`DryRun.check_card`
runs on the card thread in one card transaction, calling the engine's own preflight pieces
(:func:`~card.renewal.preflight.refuse_expired_card`, :class:`~card.renewal.preflight.SlotPreflight`,
:func:`~card.renewal.admin.piv_token` (the management key), :class:`~card.renewal.signer.CardSigner`).

What the card is sent: SELECT, GET DATA, GET METADATA, VERIFY (the PIN; an empty VERIFY for the
tries left), GENERAL AUTHENTICATE (the management key's challenge-response; the old keys'
signatures for the RA's dry grant and a request signer's test signature). Never GENERATE
ASYMMETRIC KEY PAIR (INS ``47``), PUT DATA (``DB``), CHANGE REFERENCE DATA (``24``) or RESET RETRY
COUNTER (``2C``). What a dry run may spend: a wrong PIN costs a try like any VERIFY (with one try
left it is not sent unless the caller allows it); a wrong management key costs nothing on cards
without a management-key retry counter (a card that keeps one counts the failure). On disk it
writes and removes a probe file in the state directory (:func:`card.journal.check_directory`,
through :mod:`card.atomic`) and appends one audit record (``event: check``).

A side-by-side PKCS#11 token (tester F-26) gets the same checks per key (by CKA_ID): ``C_Login`` for the
PIN, no management key, no CHUID, the key type among its mechanisms (:mod:`card.renewal.check_token`);
it is sent nothing that creates, changes or destroys an object.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from os.path import abspath

from cryptography.hazmat.primitives import serialization

from card import words
from card.check_words import CHECK_CARD_LISTS, CHECK_GIVE_PIN, CHECK_TOKEN_LISTS, check_no_pin_list, check_said, check_skipped_no_pin
from card.certificates import fingerprint
from card.config import Settings
from card.enrollment.base import DryRunIssuer, DryRunUnsupported, Issuer, IssuerUnavailable
from card.errors import CardError, CardRemovedError, OperationCancelled, StateFileError
from card.journal import AuditLog, JournalStore, SlotJournal, check_directory
from card.piv import KeyType, PivSession
from card.piv.quirks import card_lists_key_type
from card.renewal.admin import as_token
from card.renewal.context import RenewalContext, ask_ca
from card.renewal.keys import TokenKeys
from card.renewal.check_token import beside_signer_items, token_card_item
from card.renewal.model import CardSummary, KeySetting, SlotState, SlotStatus, UpdateCheck, card_expiry_status, update_check
from card.renewal.plan import SlotPlan, request_signer_slot
from card.renewal.check_report import CheckItem, CheckOutcome, CheckReport, failed, passed, skipped, colon_hex
from card.renewal.preflight import CERTIFICATE_GROWTH_BYTES, SlotPreflight, refuse_expired_card
from card.renewal.reading import read_card
from card.renewal.signer import CardSigner
from card.secret import Secret
from card.token import KeyRef, Token, TokenInterface


class DryRun:
    """One dry run on one card.

    Args:
        issuer: the configured issuer; None when it could not be opened (``issuer_error`` says why).
        issuer_error: why the issuer could not be opened (reported by the CA check).
        cancel: ends the CA's and the RA hook's waits (OperationCancelled).
        now: the clock (aware UTC).
    """

    def __init__(self, settings: Settings, issuer: Issuer | None, journals: JournalStore, audit: AuditLog, *,
                 issuer_error: CardError | None = None, cancel: threading.Event | None = None,
                 now: Callable[[], dt.datetime] | None = None) -> None:
        self.settings = settings
        self.journals = journals
        self.audit = audit
        self.issuer_error = issuer_error
        self.ctx: RenewalContext | None = None
        if issuer is not None:
            self.ctx = RenewalContext(settings, issuer, journals, audit, cancel=cancel or threading.Event(),
                                      issuer_retry_delays_s=())
            if now is not None:
                self.ctx.now = now
        self.now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        self.ca_item: CheckItem | None = None
        self._pin_given = False
        self._beside = False
        """A side-by-side PKCS#11 token (tester F-26): keys by CKA_ID, no management key, no CHUID."""
        self._no_pin: list[str] = []
        """Titles of the checks skipped because no PIN was given."""

    def _said(self, check: str, outcome: CheckOutcome, key: str, *, slot: str | None = None, code: str | None = None,
              **values: object) -> CheckItem:
        """A check's item in the words of :data:`card.check_words.CHECK_SAID` ``key`` (``{ra}`` filled in)."""
        message, next_step = check_said(key, ra=self.settings.ra_contact, **values)
        return CheckItem(check, outcome, message, next_step, slot, code)

    # -- phase 1: the CA, without the card ------------------------------------------------------
    def check_issuer(self) -> CheckItem:
        """CA reachable, and its certificate the pinned one (``issuer.ca_fingerprint``).

        Raises:
            OperationCancelled: ``cancel`` was set while waiting for the CA.
        """
        self.ca_item = self._ca_item()
        return self.ca_item

    def _ca_item(self) -> CheckItem:
        if self.ctx is None:
            return failed("ca", self.issuer_error or IssuerUnavailable("the certificate authority could not be opened"))
        issuer = self.ctx.issuer
        try:
            cas = ask_ca(self.ctx, issuer.ca_certificates)
        except OperationCancelled:
            raise
        except CardError as exc:
            return failed("ca", exc)
        prints = [fingerprint(ca) for ca in cas]
        if not prints:
            return self._said("ca", CheckOutcome.FAILED, "ca.empty", code="CA-BAD-REPLY", ca=issuer.name)
        shown = ", ".join(colon_hex(fp) for fp in prints)
        pinned = self.settings.issuer.ca_fingerprint
        if pinned and pinned not in prints:
            return self._said("ca", CheckOutcome.FAILED, "ca.mismatch", code="CA-PIN", ca=issuer.name, shown=shown,
                              pinned=colon_hex(pinned))
        if pinned:
            return self._said("ca", CheckOutcome.PASSED, "ca.pinned", ca=issuer.name, pinned=colon_hex(pinned))
        return self._said("ca", CheckOutcome.PASSED, "ca.unpinned", ca=issuer.name, shown=shown, fingerprint=prints[0])

    def _ca_unusable(self) -> str | None:
        """Why the checks that need the CA are skipped (a :data:`CHECK_SAID` key): the CA check failed —
        ``ca.unreached`` when it could not be reached (CA-DOWN, CA-TIMEOUT), else ``ca.failed``. None when it passed
        or was not run. Asking the CA again per slot would only wait ``timeout_s`` again (tester F-10)."""
        item = self.ca_item
        if item is None or item.outcome is not CheckOutcome.FAILED:
            return None
        return "ca.unreached" if item.code in ("CA-DOWN", "CA-TIMEOUT") else "ca.failed"

    # -- phase 2: the card ----------------------------------------------------------------------
    def check_card(self, session: Token | PivSession, pin: Secret | None, *, refuse_last_try: bool = True) -> CheckReport:
        """Every check that needs the card, in one card transaction; ``pin`` (optional) is wiped.
        Run :meth:`check_issuer` first (its item is included).

        Raises:
            CardRemovedError, NoCardError: the card went away (the checks so far are lost).
            OperationCancelled: ``cancel`` was set while waiting for the CA or the RA hook.
            ApduError: the card has no PIV application.
        """
        try:
            return self._check_card(session, pin, refuse_last_try)
        finally:
            if pin is not None:
                pin.wipe()

    def _check_card(self, session: Token | PivSession, pin: Secret | None, refuse_last_try: bool) -> CheckReport:
        self._pin_given, self._no_pin = pin is not None, []
        token = as_token(session, self.settings)
        self._keys = TokenKeys(token)
        self._beside = token.info.interface is TokenInterface.PKCS11 and token.info.side_by_side
        summary = read_card(token, self.settings, now=self.now(), journals=self.journals,
                            reader=token.info.reader, pin_retries=True, key_metadata=False)
        report = CheckReport(summary.reader, card_id=summary.card_id, guid_text=summary.guid_text, holder=summary.holder)
        items = report.items
        items += [self._card_item(summary), self._state_item(summary.card_id), self._expiry_item(summary),
                  self._certificates_item(summary)]
        if self.ca_item is not None:
            items.append(self.ca_item)
        with_certificate = [s for s in summary.slots if s.certificate is not None]
        signer = CardSigner(token, pin if pin is not None else Secret(b""))
        preflight = SlotPreflight(self.ctx, token, self._keys, signer, summary.card_key_types) if self.ctx else None
        for status in with_certificate:
            items += [self._key_type_item(preflight, status, summary), self._size_item(status)]
        pin_at = len(items) + (0 if "pin-protected" in self.settings.sources or self._beside else 1)
        pin_ok = self._log_in(items, signer, token, pin, summary.pin_retries, refuse_last_try)
        renewable = [s for s in with_certificate if s.state in (SlotState.OK, SlotState.DUE)]
        items += self._request_signer_items(preflight, renewable, summary, pin_ok)
        finishing = set(summary.pending_journal.slots) if summary.pending_journal is not None else set()
        items += self._grant_items(signer, [s for s in renewable if s.name not in finishing], pin_ok)
        items += [self._said("ra_grant", CheckOutcome.SKIPPED, "grant.finishing", slot=s.name)
                  for s in renewable if s.name in finishing]
        if items[pin_at].outcome is CheckOutcome.SKIPPED and pin is None:  # the PIN check says what it cost
            items[pin_at] = dataclasses.replace(items[pin_at], message=check_no_pin_list(self._no_pin))
        self.audit.write_quietly(event="check", card_guid=summary.card_id, reader=summary.reader,
                                 outcome="passed" if report.ok else "failed",
                                 failed_checks=[item.title for item in report.failed] or None)
        return report

    def _ref(self, status: SlotStatus) -> KeyRef:
        """The token's key of ``status``: a PKCS#11 key as read, a PIV slot's as the token names it."""
        return status.key if isinstance(status.setting, KeySetting) else self._keys.of_slot(status.slot)

    def _card_item(self, summary: CardSummary) -> CheckItem:
        if summary.token is not None and summary.token.interface is TokenInterface.PKCS11:
            return token_card_item(summary, self.settings.ra_contact)
        if summary.card_id is None:
            return self._said("card", CheckOutcome.FAILED, "card.none", code="REFUSED")
        return self._said("card", CheckOutcome.PASSED, "card.ok", reader=summary.reader, holder=summary.holder or "(no name on the card)",
                          guid=summary.guid_text or summary.card_id)

    def _state_item(self, card_id: str | None) -> CheckItem:
        """The state directory takes a real write (a probe file written and removed); the journal and
        the audit log are regular files that can be written, or absent."""
        directory = self.journals.directory
        try:
            check_directory(directory)
            if abspath(self.audit.path.parent) != abspath(directory):
                check_directory(self.audit.path.parent)
            if card_id is not None:
                self.journals.check_path(card_id)
            self.audit.check_path()
        except StateFileError as exc:
            return failed("state_directory", exc)
        return self._said("state_directory", CheckOutcome.PASSED, "state.ok", directory=directory)

    def _expiry_item(self, summary: CardSummary) -> CheckItem:
        """The card's own expiry (CHUID): passed, or a renewal would be refused for it."""
        try:
            refuse_expired_card(summary, self.settings, self.now)
        except CardError as exc:  # CardExpiredError
            return failed("card_expiry", exc)
        expiry = summary.card_expiry
        if expiry is None:
            return self._said("card_expiry", CheckOutcome.PASSED, "expiry.token" if self._beside else "expiry.none")
        window = self.settings.window_days
        if card_expiry_status(expiry, window, self.now()) == "ending" and (summary.due or summary.expired):
            return self._said("card_expiry", CheckOutcome.FAILED, "expiry.ending", code="CARD-EXPIRED", expiry=f"{expiry:%Y-%m-%d}",
                              window=window)
        return self._said("card_expiry", CheckOutcome.PASSED, "expiry.ok", expiry=f"{expiry:%Y-%m-%d}")

    def _certificates_item(self, summary: CardSummary) -> CheckItem:
        """What a renewal would find: an unfinished update, an expired or unreadable slot, what is due."""
        ra = self.settings.ra_contact
        if summary.pending_journal is not None:
            return self._said("certificates", CheckOutcome.FAILED, "certificates.resume", code="RESUME",
                              reference=summary.pending_journal.reference)
        unreadable = [s for s in summary.slots if s.state is SlotState.UNREADABLE]
        if unreadable:
            return self._said("certificates", CheckOutcome.FAILED, "certificates.unreadable", code="REFUSED",
                              slots=words.slot_names(unreadable))
        check = update_check(summary)
        said = words.update_words(summary, check, self.settings.window_days, ra)
        if check is UpdateCheck.AVAILABLE:
            return self._said("certificates", CheckOutcome.PASSED, "certificates.due", slots=words.slot_names(summary.due))
        assert said is not None
        if check is UpdateCheck.UP_TO_DATE:
            return passed("certificates", said.message.rstrip("."))
        return CheckItem("certificates", CheckOutcome.FAILED, said.message.rstrip("."), said.next_step, code="REFUSED")

    def _key_type_item(self, preflight: SlotPreflight | None, status: SlotStatus, summary: CardSummary) -> CheckItem:
        """The key type GENERATE would make: the card lists it (F13) and the issuer certifies it (skipped
        when the CA check failed and the card lists it)."""
        name, cert = status.name, status.certificate
        assert cert is not None
        if preflight is None:
            return self._said("key_type", CheckOutcome.SKIPPED, "ca.closed", slot=name)
        kt = self.settings.key_type or KeyType.of(cert.public_key())
        if (why := self._ca_unusable()) is not None and card_lists_key_type(summary.card_key_types, kt):
            assert self.ctx is not None  # (not listed by the card: the engine's own words below say so)
            lists = CHECK_TOKEN_LISTS if self._beside else CHECK_CARD_LISTS[summary.card_key_types is None]
            return self._said("key_type", CheckOutcome.SKIPPED, "key_type.ca_down", slot=name, key_type=kt.name,
                              card=lists, ca=self.ctx.issuer.name, why=check_said(why)[0])
        try:
            kt = preflight.key_type_for(self._ref(status), cert, SlotJournal(name, fingerprint(cert)))
        except CardError as exc:  # NotSupportedError, RenewalRefused
            return failed("key_type", exc, name)
        assert self.ctx is not None
        said = "key_type.token" if self._beside else "key_type.ok" if summary.card_key_types is not None else "key_type.unlisted"
        return self._said("key_type", CheckOutcome.PASSED, said, slot=name, key_type=kt.name, ca=self.ctx.issuer.name)

    def _size_item(self, status: SlotStatus) -> CheckItem:
        """A renewed certificate fits ``card.max_certificate_bytes`` (the engine's own margin)."""
        assert status.certificate is not None
        size = len(status.certificate.public_bytes(serialization.Encoding.DER))
        limit, slot = self.settings.max_certificate_bytes, status.name
        if size + CERTIFICATE_GROWTH_BYTES > limit:
            return self._said("certificate_size", CheckOutcome.FAILED, "size.too_large", slot=slot, code="TOOLARGE", size=size,
                              needed=size + CERTIFICATE_GROWTH_BYTES, limit=limit)
        return self._said("certificate_size", CheckOutcome.PASSED, "size.ok", slot=slot, size=size, limit=limit)

    # -- PIN and management key, in the engine's order (F08) ---------------------------------
    def _log_in(self, items: list[CheckItem], signer: CardSigner, admin: Token, pin: Secret | None,
                retries: int | None, refuse_last_try: bool) -> bool:
        """The management key and the PIN, in the engine's order: the management key first, unless it
        is PIN-protected (then the PIN first). Appends both items; returns whether the PIN was verified.
        A side-by-side token writes in the holder's session: the PIN alone (no management key check)."""
        if self._beside:
            items.append(self._pin_item(signer, pin, retries, refuse_last_try))
            return items[-1].outcome is CheckOutcome.PASSED
        if "pin-protected" in self.settings.sources:
            items.append(self._pin_item(signer, pin, retries, refuse_last_try))
            pin_ok = items[-1].outcome is CheckOutcome.PASSED
            if pin_ok:
                items.append(self._management_key_item(admin))
            else:
                items.append(self._not_verified("management_key", "reading the PIN-protected management key"))
            return pin_ok
        items.append(self._management_key_item(admin))
        items.append(self._pin_item(signer, pin, retries, refuse_last_try))
        return items[-1].outcome is CheckOutcome.PASSED

    def _management_key_item(self, admin: Token) -> CheckItem:
        try:
            admin.log_in_admin()
        except CardRemovedError:
            raise
        except CardError as exc:  # ManagementKeyError, ApduError, ConfigError (a key file)
            return failed("management_key", exc)
        sources = ", ".join(self.settings.sources)
        return self._said("management_key", CheckOutcome.PASSED, "mgmt.default" if self.settings.uses_default_management_key else "mgmt.ok",
                          sources=sources)

    def _pin_item(self, signer: CardSigner, pin: Secret | None, retries: int | None, refuse_last_try: bool) -> CheckItem:
        if retries == 0:  # blocked: a failure whether or not a PIN was given (nothing is sent)
            self._pin_given = True  # the checks that need the PIN say "not verified (see the PIN check)"
            return self._said("pin", CheckOutcome.FAILED, "pin.blocked", code="BLOCKED")
        if pin is None:
            return skipped("pin", check_no_pin_list([]), CHECK_GIVE_PIN)
        if retries == 1 and refuse_last_try:
            return self._said("pin", CheckOutcome.SKIPPED, "pin.last_try")
        try:
            signer.log_in()
        except CardRemovedError:
            raise
        except CardError as exc:  # InvalidPinError (tries left), PinBlockedError, PinFormatError
            return failed("pin", exc)
        return self._said("pin", CheckOutcome.PASSED, "pin.ok")

    def _not_verified(self, check: str, what: str, slot: str | None = None) -> CheckItem:
        """Skipped: no PIN was given, or the one given was not verified (see the PIN check)."""
        if self._pin_given:
            return self._said(check, CheckOutcome.SKIPPED, "pin.not_verified", slot=slot)
        return self._skip_for_pin(check, what, slot)

    def _skip_for_pin(self, check: str, what: str, slot: str | None = None) -> CheckItem:
        item = skipped(check, check_skipped_no_pin(what), slot=slot)
        self._no_pin.append(item.title)
        return item

    # -- what needs the old keys: request signers, the RA's dry grant --------------------------
    def _request_signer_items(self, preflight: SlotPreflight | None, renewable: list[SlotStatus],
                              summary: CardSummary, pin_ok: bool) -> list[CheckItem]:
        """SCEP RenewalReq: each request signer holds a working RSA certificate and its key (a test
        signature). None listed when the issuer has every new key sign its own request."""
        if preflight is None or self.ctx is None:
            return []
        if self._beside:  # the old key signs its own renewal request (card.renewal.beside)
            return beside_signer_items(self.ctx, renewable, self.settings.ra_contact)
        plan = [SlotPlan(s.setting, s.certificate, SlotJournal(s.name), self._ref(s)) for s in renewable]
        signers = {request_signer_slot(self.ctx.issuer, entry.ref, self._keys) for entry in plan} - {None}
        if not signers:
            return []
        names = ", ".join(sorted(s.hex for s in signers if s is not None))
        if not pin_ok:
            return [self._not_verified("request_signer", f"the test signature in slot {names}")]
        try:
            preflight.check_request_signers(plan, {s.slot: s for s in summary.slots})
        except (CardRemovedError, OperationCancelled):
            raise
        except CardError as exc:
            return [failed("request_signer", exc)]
        return [self._said("request_signer", CheckOutcome.PASSED, "signer.ok", slots=names)]

    def _grant_items(self, signer: CardSigner, renewable: list[SlotStatus], pin_ok: bool) -> list[CheckItem]:
        """Per renewable slot: the issuer's dry mode of its grant (:class:`DryRunIssuer`), the old
        key proving possession; nothing is recorded and no one-time challenge is spent."""
        out: list[CheckItem] = []
        for status in renewable:
            name = status.name
            if self.ctx is None:
                out.append(self._said("ra_grant", CheckOutcome.SKIPPED, "ca.closed", slot=name))
            elif (why := self._ca_unusable()) is not None:
                out.append(self._said("ra_grant", CheckOutcome.SKIPPED, why, slot=name))
            elif not pin_ok:
                out.append(self._not_verified("ra_grant", "the old key's proof of possession", name))
            elif not isinstance(self.ctx.issuer, DryRunIssuer):
                out.append(self._said("ra_grant", CheckOutcome.SKIPPED, "grant.no_dry_mode", slot=name, ca=self.ctx.issuer.name))
            else:
                out.append(self._grant_item(self.ctx.issuer, signer, status))
        return out

    def _grant_item(self, issuer: DryRunIssuer, signer: CardSigner, status: SlotStatus) -> CheckItem:
        assert self.ctx is not None and status.certificate is not None
        name, cert, ref = status.name, status.certificate, self._ref(status)
        try:
            signer.slot_key_types[ref] = KeyType.of(cert.public_key())
            note = ask_ca(self.ctx, lambda: issuer.check_renewal(ref.hex, cert, lambda m: signer.sign(ref, m)))
        except DryRunUnsupported as exc:
            return skipped("ra_grant", str(exc), slot=name)
        except (CardRemovedError, OperationCancelled):
            raise
        except CardError as exc:  # IssuerRejected, RaRejected, IssuerUnavailable, a refused signature
            return failed("ra_grant", exc, name)
        return passed("ra_grant", note, slot=name)
