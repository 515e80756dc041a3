"""The Issuer contract is complete (issue 13): every member the renewal engine uses is on
:class:`card.enrollment.base.Issuer`, every built-in issuer implements all of it with the protocol's
parameters, and the engine hands every issuer the same arguments (no probing for optional
extras: a proxy issuer is treated like the issuer it wraps)."""

from __future__ import annotations

import datetime as dt
import inspect
import threading
from typing import Any

import pytest

from card.config import Settings
from card.emulator.card import SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.base import Issuer
from card.enrollment.local import LocalCA
from card.enrollment.scep import ScepIssuer
from card.enrollment.scep_settings import ScepIssuerSettings
from card.journal import AuditLog, JournalStore
from card.lazy import LazyIssuer
from card.piv import KeyType, PivSession, Slot
from card.renewal import RenewalContext, renew
from card.secret import Secret
from tests.card.test_never_worse import certificate_on, set_card_expiry, slot_works

PIN = "123456"
MEMBERS = sorted(name for name in {*vars(Issuer), *Issuer.__annotations__}
                 if not name.startswith("_"))


def test_the_protocol_names_everything_the_engine_asks() -> None:
    assert MEMBERS == ["authorize_renewal", "ca_certificates", "cancel", "challenge_password", "issue", "name",
                       "request_signer_slot", "supported_key_types"]


@pytest.mark.parametrize("make", [lambda ca: ca,
                                  lambda ca: ScepIssuer(ScepIssuerSettings("http://127.0.0.1:9/scep", None)),
                                  lambda ca: LazyIssuer(lambda: ca)],
                         ids=["local", "scep", "lazy"])
def test_every_issuer_implements_every_member_with_the_protocols_parameters(ca: LocalCA, make: Any) -> None:
    """Was: LocalCA had no request_signer_slot, challenge_password or cancel, ScepIssuer.issue no
    not_after_limit; the engine probed for them with getattr and inspect.signature."""
    issuer = make(ca)
    for name in MEMBERS:
        assert hasattr(issuer, name), name
        declared = vars(Issuer).get(name)
        if inspect.isfunction(declared):
            expected = [(p.name, p.kind) for p in inspect.signature(declared).parameters.values()][1:]  # no self
            actual = [(p.name, p.kind) for p in inspect.signature(getattr(issuer, name)).parameters.values()]
            assert actual == expected, name
    assert isinstance(issuer.cancel, threading.Event)


class ForwardingIssuer:
    """Wraps an issuer the way a timing or logging proxy does: ``issue(*args, **kwargs)``."""

    def __init__(self, inner: Issuer) -> None:
        self.inner, self.name, self.cancel = inner, inner.name, inner.cancel

    def ca_certificates(self) -> Any:
        return self.inner.ca_certificates()

    def supported_key_types(self) -> Any:
        return self.inner.supported_key_types()

    def request_signer_slot(self, slot: str) -> Any:
        return self.inner.request_signer_slot(slot)

    def authorize_renewal(self, *args: Any) -> Any:
        return self.inner.authorize_renewal(*args)

    def challenge_password(self, grant: Any) -> Any:
        return self.inner.challenge_password(grant)

    def issue(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.issue(*args, **kwargs)


def test_a_proxy_issuer_is_told_the_cards_own_expiry(ca: LocalCA) -> None:
    """Was: the engine passed ``not_after_limit`` only to an issue() whose signature named it, so
    through a proxy the embedded CA issued past the card's CHUID expiry and the renewal was refused."""
    card = SoftPivCard(create_card_state(ca, expires_in_days=30, key_type=KeyType.ECCP256))
    expiry = dt.date.today() + dt.timedelta(days=400)
    set_card_expiry(card, expiry)
    settings = Settings()
    ctx = RenewalContext(settings, ForwardingIssuer(ca), JournalStore(settings.state_dir),  # type: ignore[arg-type]
                         AuditLog(settings.state_dir / "audit.log"), issuer_retry_delays_s=())
    result = renew(PivSession(card), ctx, Secret(PIN))
    assert result.ok, result.error
    for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
        assert certificate_on(card, slot).not_valid_after_utc.date() <= expiry and slot_works(card, slot)


def test_a_lazy_issuer_makes_its_issuer_at_the_first_call_only(ca: LocalCA) -> None:
    made: list[LocalCA] = []
    lazy = LazyIssuer(lambda: made.append(ca) or ca)  # type: ignore[func-returns-value]  # append, then the CA
    assert made == []
    assert lazy.request_signer_slot("9A") is None and lazy.cancel is ca.cancel and lazy.name == ca.name
    assert lazy.ca_certificates() == ca.ca_certificates() and made == [ca]
