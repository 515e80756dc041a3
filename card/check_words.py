"""What the dry run (``cardrenew renew --check``, the Card tab's *Check*; :mod:`card.renewal.check`)
tells the user, written once for the CLI and the TUI: each check's title, what it says by outcome
(:data:`CHECK_SAID`), the skipped-without-a-PIN words and the summary.

The same rules as :mod:`card.words` (whose section this would be, kept apart so that neither module
passes 400 lines): it imports nothing from ``card`` but :class:`card.words.Words`; a *clause* is
lower-case and unterminated (the CLI and the TUI make it a sentence).
"""

from __future__ import annotations

from collections.abc import Sequence

from card.words import Words

CHECK_TITLES: dict[str, str] = {
    "card": "Card",
    "state_directory": "State directory",
    "card_expiry": "Card expiry (CHUID)",
    "certificates": "Certificates",
    "ca": "Certificate authority",
    "pin": "PIN",
    "management_key": "Management key",
    "key_type": "Key algorithm",
    "certificate_size": "Certificate size",
    "request_signer": "Request signer",
    "ra_grant": "Renewal grant",
}
"""Each check of the dry run by its stable id (the ``check`` field of ``renew --check --json``)."""

CHECK_SAID: dict[str, tuple[str, str]] = {
    "card.none": ("the card holds no certificate and no CHUID; it cannot be renewed here", "Contact {ra}."),
    "card.ok": ("a PIV card in {reader}; holder {holder}; card GUID {guid}", ""),
    "card.token": ("the PKCS#11 token {token} in {reader}; holder {holder}", ""),
    "card.no_token_id": ("the token {token} states no serial number and holds no certificate; it cannot be renewed "
                         "here", "Contact {ra}."),
    "state.ok": ("{directory} took a test write (a probe file written and removed) and has room; the journal "
                 "and the audit log can be written", ""),
    "expiry.none": ("the card's CHUID states no expiration date", ""),
    "expiry.token": ("a PKCS#11 token has no CHUID expiration date; only its certificates' dates apply", ""),
    "expiry.ending": ("the card itself expires on {expiry}, within the {window}-day renewal window; a certificate "
                      "may not outlive its card, so no renewal is made", "Contact {ra} for a new card."),
    "expiry.ok": ("the card is valid until {expiry} (CHUID)", ""),
    "certificates.resume": ("an unfinished update (reference {reference}) is waiting", "Finish it first: run "
                            "`cardrenew renew` (or Update My Card); it resumes where it stopped."),
    "certificates.unreadable": ("{slots} holds an unreadable object, not a certificate",
                                "Contact {ra}: the slot must be re-issued."),
    "certificates.due": ("due for renewal: {slots}", ""),
    "ca.closed": ("the certificate authority could not be opened", ""),
    "ca.unreached": ("not checked: the certificate authority could not be reached (see the Certificate authority "
                     "check)", ""),
    "ca.failed": ("not checked: the certificate authority's answer cannot be used (see the Certificate authority "
                  "check)", ""),
    "ca.empty": ("the {ca} answered with no CA certificate",
                 "Contact {ra}: the CA's certificate is needed to check what it issues."),
    "ca.mismatch": ("the {ca} answered, but its certificate (SHA-256 {shown}) does not match the pinned fingerprint "
                    "issuer.ca_fingerprint ({pinned}); nothing was changed",
                    "Check issuer.ca_fingerprint with {ra}: either it is mistyped, or another CA answered."),
    "ca.pinned": ("the {ca} answered; its certificate matches issuer.ca_fingerprint (SHA-256 {pinned})", ""),
    "ca.unpinned": ("the {ca} answered; its certificate (SHA-256 {shown}) is not pinned (issuer.ca_fingerprint "
                    "is not set)", "Pin it: set issuer.ca_fingerprint = \"{fingerprint}\" once {ra} confirms it."),
    "key_type.ca_down": ("{key_type}: {card}; whether the {ca} certifies it is {why}", ""),
    "key_type.ok": ("{key_type}: the card lists it; the {ca} certifies it", ""),
    "key_type.token": ("{key_type}: the token's mechanisms include its key-pair generation; the {ca} certifies it", ""),
    "key_type.unlisted": ("{key_type}: the card does not list its algorithms (it is asked at GENERATE); the {ca} "
                          "certifies it", ""),
    "size.too_large": ("the certificate is {size} bytes; a renewed one may need {needed}, more than this card's "
                       "{limit}-byte limit (card.max_certificate_bytes)", "Contact {ra}: the certificate profile "
                       "must be smaller (or set card.max_certificate_bytes to this card's real capacity)."),
    "size.ok": ("{size} bytes; a renewed one fits this card's {limit}-byte limit (card.max_certificate_bytes)", ""),
    "mgmt.default": ("authenticated (sources: {sources}); the well-known default key is allowed by the configuration",
                     "Give each card its own management key before production use (management_key.source)."),
    "mgmt.ok": ("authenticated with the configured key (sources: {sources})", ""),
    "pin.blocked": ("the PIN is blocked; it was not sent", "Contact {ra} to unlock it."),
    "pin.last_try": ("only 1 PIN try is left, so the PIN was not sent (a wrong one would block the card)",
                     "If you are sure of the PIN, run the check again allowing the last try "
                     "(`--allow-last-pin-try`, or confirm it on the Card tab)."),
    "pin.ok": ("accepted", ""),
    "pin.not_verified": ("not checked: the PIN was not verified (see the PIN check)", ""),
    "signer.ok": ("slot {slots} holds a valid RSA certificate and its key (a test signature)", ""),
    "signer.not_rsa": ("the {ca} wants renewal requests signed with the old key of {slots}, which is not RSA (the CA "
                       "encrypts its reply to the signer)", "Contact {ra}: the CA must be set to PKCSReq."),
    "signer.token": ("the old key of {slots} signs its renewal request (RSA; its proof of possession is the renewal "
                     "grant check)", ""),
    "grant.finishing": ("not checked: the unfinished update finishes this slot (its key may be new already)",
                        "Run `cardrenew renew` (or Update My Card): it finishes the update."),
    "grant.no_dry_mode": ("the {ca} has no dry mode; a real request would be granted and recorded, so it was not "
                          "asked", ""),
}
"""What each check of the dry run says, by outcome: (message clause, next step), with ``{names}`` that
:func:`check_said` fills in (``{ra}``: the RA contact)."""


def check_said(key: str, **values: object) -> tuple[str, str]:
    """The (message, next step) of :data:`CHECK_SAID` ``key`` with ``values`` filled in."""
    message, next_step = CHECK_SAID[key]
    return message.format(**values), next_step.format(**values)


CHECK_CARD_LISTS = ("the card lists it", "the card does not list its algorithms (it is asked at GENERATE)")
"""How the key algorithm check names what the card says of a key type: (listed, not listed at all)."""
CHECK_TOKEN_LISTS = "the token's mechanisms include it"
"""The same for a PKCS#11 token (``C_GetMechanismList``: the key-pair generation mechanism is listed)."""


def check_skipped_no_pin(what: str) -> str:
    """A check not run because no PIN was given: ``what`` it would have done."""
    return f"not checked: no PIN was given ({what} needs the PIN)"


def check_no_pin_list(titles: Sequence[str]) -> str:
    """The PIN check's message when no PIN was given: which checks were skipped because of it."""
    return ("no PIN was given, so it was not sent; skipped because of it: " + ", ".join(titles)
            if titles else "no PIN was given, so it was not sent")


CHECK_GIVE_PIN = "Run the check again with the PIN (`cardrenew renew --check`, or Check on the Card tab)."
CHECK_NOTHING_CHANGED = "A dry run: nothing on the card was changed (no key generated, nothing written)."


def check_summary(passed: int, failed: int, skipped: int) -> Words:
    """The dry run's last line: every check passed (some maybe skipped), or how many failed."""
    counts = f"{passed} passed, {failed} failed, {skipped} skipped"
    if failed:
        return Words("Some checks failed", f"{counts}. {CHECK_NOTHING_CHANGED}",
                     "Fix each failed check (its next step is shown), then run the check again.")
    if skipped:
        return Words("No check failed", f"{counts}. {CHECK_NOTHING_CHANGED}",
                     "The skipped checks did not run; see why beside each.")
    return Words("Every check passed", f"{counts}. {CHECK_NOTHING_CHANGED}")
