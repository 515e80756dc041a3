"""The Issuer interface (DESIGN §4) and its errors."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from card.errors import CardError
from card.secret import Secret

Signer = Callable[[bytes], bytes]
"""Signs a message with a card key (SHA-256; PKCS#1 v1.5 for RSA, DER ECDSA for EC)."""


class IssuerError(CardError):
    """Base of issuer errors."""

    title = "Certificate authority error"
    code = "CA"


class IssuerRejected(IssuerError):
    """The CA refused; final. ``reason`` is the CA's own text."""

    title = "The certificate authority refused the renewal"
    code = "CA-REFUSED"
    next_step = "Nothing was changed on your card. Contact your Registration Authority (RA) with the reference shown."


class RetryRefused(IssuerRejected):
    """The CA refused a request it was sent before under the same grant, whose answer never arrived:
    it has probably issued already, and the one-time authorisation is spent."""

    title = "The certificate authority refused to issue again"
    code = "CA-RETRY-REFUSED"
    next_step = ("This certificate's new key has no certificate yet, and the certificate authority will not "
                 "issue a second one under the same request. Contact your Registration Authority (RA) with the "
                 "reference shown: they can release the certificate already issued, or re-issue this slot.")


class RaRejected(IssuerRejected):
    """The Registration Authority (the deployment's RA hook) refused to authorise the renewal."""

    title = "The Registration Authority refused the renewal"
    code = "RA-REFUSED"


class IssuerUnavailable(IssuerError):
    """The CA cannot be reached now; retryable with back-off."""

    title = "The certificate authority cannot be reached"
    code = "CA-DOWN"
    next_step = "Try again later from the Card tab. If it keeps failing, contact your Registration Authority (RA)."
    retry_helps = True
    """Whether asking again may give another answer (False: a reply too large will not get smaller)."""


class IssuerReplyInvalid(IssuerUnavailable):
    """The CA (or something in between, a proxy's error page) answered with data that is not what
    the protocol allows: not a certificate, not a SCEP message, a reply that does not decrypt or
    parse. Nothing was changed by reading it; retryable like any unavailability."""

    title = "The certificate authority's answer could not be read"
    code = "CA-BAD-REPLY"


class RaUnavailable(IssuerUnavailable):
    """The Registration Authority (the deployment's RA hook) cannot answer now; retryable."""

    title = "The Registration Authority cannot be reached"
    code = "RA-DOWN"


class IssuancePending(IssuerError):
    """The CA accepted the request but has not issued yet; poll with ``transaction_id``."""

    title = "Issuance pending"
    code = "CA-PENDING"
    next_step = ("The certificate authority has not issued the certificate yet (it may need an RA's "
                 "approval). Run the update again later: it continues the same request.")

    def __init__(self, transaction_id: str) -> None:
        super().__init__(f"the certificate authority has not issued yet (transaction {transaction_id})")
        self.transaction_id = transaction_id


@dataclass(frozen=True)
class RenewalGrant:
    """A one-time permission to renew one slot, obtained while the old key still exists.

    ``grant_id`` is opaque to the card layers; ``expires`` is aware UTC. ``secret`` is a one-time
    token the RA handed out for this grant (a SCEP challenge password from the RA hook), or None.
    It is kept in the journal (mode 0600) only until the certificate is issued, because a resumed
    renewal cannot ask the RA again: the old key that proved who asked is gone by then.
    """

    grant_id: str
    slot: str
    subject_der_hex: str
    old_certificate_fingerprint: str
    expires: dt.datetime
    secret: Secret | None = field(default=None, repr=False, compare=False)
    request_sent: bool = False
    """An earlier run sent the CA a request under this grant and recorded no answer: the CA may
    have issued already (the reply was lost), so ``issue`` first asks for that result."""

    def to_dict(self) -> dict[str, str]:
        out = {
            "grant_id": self.grant_id,
            "slot": self.slot,
            "subject_der_hex": self.subject_der_hex,
            "old_certificate_fingerprint": self.old_certificate_fingerprint,
            "expires": self.expires.isoformat(),
        }
        if self.secret is not None:  # the journal (0600) keeps it until issuance: see above
            out["secret"] = self.secret.reveal_text()
        if self.request_sent:
            out["request_sent"] = "1"
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, str]) -> RenewalGrant:
        return cls(raw["grant_id"], raw["slot"], raw["subject_der_hex"], raw["old_certificate_fingerprint"],
                   dt.datetime.fromisoformat(raw["expires"]),
                   Secret(raw["secret"]) if raw.get("secret") is not None else None, raw.get("request_sent") == "1")


class CardKey:
    """The new key in the slot, for protocols that need card operations during issuance (SCEP):
    ``sign(message)`` (SHA-256) and ``rsa_decipher(block)`` (raw RSA, 256 bytes), both on the card."""

    def __init__(self, public_key: PublicKeyTypes, sign: Signer, rsa_decipher: Callable[[bytes], bytes]) -> None:
        self.public_key = public_key
        self.sign = sign
        self.rsa_decipher = rsa_decipher


@dataclass(frozen=True)
class RequestSigner:
    """A certificate the CA issued earlier and its key on the card, signing a renewal request
    (SCEP RenewalReq, RFC 8894 §3.3.1): the CA recognises its own certificate, and its reply is
    encrypted to that key."""

    certificate: x509.Certificate
    key: CardKey


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate the CA issued, with its chain up to (and including) the CA."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


class Issuer(Protocol):
    """A certificate authority reached through some enrollment protocol: everything the renewal
    engine asks of one (DESIGN §4). The engine calls, per slot: :meth:`request_signer_slot` and
    :meth:`authorize_renewal` while the old key exists (preflight), then after GENERATE
    :meth:`challenge_password` for the CSR and :meth:`issue`. A new issuer implements every member
    and is registered in :mod:`card.enrollment.registry`.
    """

    name: str
    """What the user is told the CA is (``"embedded CA"``, ``"SCEP CA"``)."""

    @property
    def cancel(self) -> threading.Event:
        """The cancellation token: set by the owner (the CLI on SIGTERM/SIGINT/SIGHUP, the door's
        ``cancel()``, the app closing), it ends every wait of this issuer within a second — HTTP
        replies, the RA hook, the PENDING poll — with OperationCancelled. An issuer that never
        waits holds one all the same."""
        ...

    def ca_certificates(self) -> list[x509.Certificate]:
        """The CA certificates new certificates must chain to. Raises IssuerUnavailable."""
        ...

    def supported_key_types(self) -> set[str]:
        """Key types the CA certifies, as KeyType names (``"RSA2048"``, ``"ECCP256"``, ...)."""
        ...

    def request_signer_slot(self, slot: str) -> str | None:
        """The slot (``"9C"``) whose CA-issued certificate and key sign the request for ``slot``
        (``"9A"``), or None when the new key signs its own request (PKCS#10 proof of possession).
        The engine checks that slot before anything changes and hands it to :meth:`issue` as
        ``request_signer`` (SCEP RenewalReq, RFC 8894 §3.3.1)."""
        ...

    def authorize_renewal(self, slot: str, old_certificate: x509.Certificate, sign_with_old_key: Signer) -> RenewalGrant:
        """Obtain a one-time grant for ``slot``, proving possession of the old key.

        Raises:
            IssuerRejected: outside the renewal window, expired, unknown certificate, bad proof.
            IssuerUnavailable: the CA cannot be reached.
        """
        ...

    def challenge_password(self, grant: RenewalGrant) -> Secret | None:
        """The challenge password the CSR for ``grant`` carries (PKCS#9, RFC 8894 §2.2), or None for
        none. A secret: the engine never journals a CSR that carries one.

        Raises:
            IssuerRejected: the grant needed a one-time challenge that is no longer known.
        """
        ...

    def issue(self, grant: RenewalGrant, csr: x509.CertificateSigningRequest, new_key: PublicKeyTypes,
              card_key: CardKey | None = None, *, request_signer: RequestSigner | None = None,
              not_after_limit: dt.datetime | None = None) -> IssuedCertificate:
        """Issue a certificate for ``csr`` under ``grant``, waiting for it if the CA answers that it
        is pending (polling as the protocol says, within the issuer's own schedule).

        ``card_key`` gives protocols that need it (SCEP) the new key's card operations;
        ``request_signer`` is the certificate and card key of :meth:`request_signer_slot` (None
        when that is None); ``not_after_limit`` (aware UTC, or None) is the card's own expiry
        (CHUID, FIPS 201-3 §4.1.4.1): an issuer that can choose notAfter issues no later; one that
        cannot ignores it (the engine checks the certificate against it either way).

        Idempotent for the same grant and the same ``new_key`` (returns the same certificate),
        so a resumed renewal never costs a second issuance.

        Raises:
            IssuerRejected, IssuerUnavailable, IssuancePending, OperationCancelled (:attr:`cancel`).
        """
        ...


class DryRunUnsupported(Exception):
    """The issuer, as configured, cannot say whether it would grant a renewal without spending
    something (a one-time challenge): the dry run skips its grant check. ``str()`` says why and
    what to configure. Not a CardError: nothing failed."""


@runtime_checkable
class DryRunIssuer(Protocol):
    """An issuer with a dry mode of :meth:`Issuer.authorize_renewal` (``cardrenew renew --check``,
    issue 15). Optional: an issuer without it has its grant check skipped."""

    def check_renewal(self, slot: str, old_certificate: x509.Certificate, sign_with_old_key: Signer) -> str:
        """Ask whether a grant for ``slot`` would be given, proving possession of the old key as
        :meth:`Issuer.authorize_renewal` does, but spending nothing: no grant is recorded, no
        one-time challenge is handed out, nothing is sent that the CA keeps.

        Returns:
            What was checked, in words (e.g. "would grant from 2027-01-01").

        Raises:
            IssuerRejected: a real request would be refused (with the CA's or RA's reason).
            IssuerUnavailable: the CA or RA cannot be reached.
            DryRunUnsupported: this issuer, as configured, has no dry mode.
        """
        ...
