"""Values made on first use: :class:`Once` and the :class:`LazyIssuer` built on it.

The TUI uses them to make what is slow to make (an issuer, the demo's virtual card with its RSA
keys) on a worker thread after the first frame instead of before it (issue 7: start-up).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:  # the issuers import cryptography; the TUI builds them after its first frame
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from card.enrollment.base import CardKey, IssuedCertificate, Issuer, RenewalGrant, RequestSigner, Signer
    from card.secret import Secret

T = TypeVar("T")


class Once(Generic[T]):
    """A value made by ``make()`` the first time :meth:`get` is called, on whichever thread calls it
    first; other threads wait for it. A failure is raised to that caller and ``make`` is tried again
    at the next call.
    """

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._value: T | None = None
        self._made = False

    @property
    def made(self) -> bool:
        """True once the value exists (never blocks)."""
        return self._made

    def get(self) -> T:
        """The value, made now if it was not yet (blocks while another thread makes it)."""
        if self._made:
            return self._value  # type: ignore[return-value]  # made: it is a T (None only when T allows it)
        with self._lock:
            if not self._made:
                self._value = self._make()
                self._made = True
        return self._value


class LazyIssuer:
    """An :class:`~card.enrollment.base.Issuer` made on first use (``Once``): each member of the
    protocol is the made issuer's, so the renewal engine cannot tell the difference. The first use
    is on the card thread (the renewal asks for the CA certificates), never before the TUI's first
    frame."""

    def __init__(self, make: Callable[[], Issuer] | Once[Issuer]) -> None:
        self._once = make if isinstance(make, Once) else Once(make)

    @property
    def name(self) -> str:
        return self._once.get().name

    @property
    def cancel(self) -> threading.Event:
        return self._once.get().cancel

    def ca_certificates(self) -> list[x509.Certificate]:
        return self._once.get().ca_certificates()

    def supported_key_types(self) -> set[str]:
        return self._once.get().supported_key_types()

    def request_signer_slot(self, slot: str) -> str | None:
        return self._once.get().request_signer_slot(slot)

    def authorize_renewal(self, slot: str, old_certificate: x509.Certificate, sign_with_old_key: Signer) -> RenewalGrant:
        return self._once.get().authorize_renewal(slot, old_certificate, sign_with_old_key)

    def challenge_password(self, grant: RenewalGrant) -> Secret | None:
        return self._once.get().challenge_password(grant)

    def issue(self, grant: RenewalGrant, csr: x509.CertificateSigningRequest, new_key: PublicKeyTypes,
              card_key: CardKey | None = None, *, request_signer: RequestSigner | None = None,
              not_after_limit: dt.datetime | None = None) -> IssuedCertificate:
        return self._once.get().issue(grant, csr, new_key, card_key, request_signer=request_signer,
                                      not_after_limit=not_after_limit)
