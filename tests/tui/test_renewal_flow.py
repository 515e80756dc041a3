"""Pilot end to end on the demo card: logon → Card tab → Update My Card → PIN again →
Write Certificates → Next → confirmation → OK, then the card itself is checked."""

from __future__ import annotations

import datetime as dt
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from card.piv import PivSession, Slot
from textual.widgets import Input
from tests.tui.conftest import screen_text, wait_for
from tui.app import make_app
from tui.messages import CertificateWritten, RenewalFinished
from tui.screens import (CardScreen, LogonScreen, MessageDialog, NextDialog, PinDialog)

PIN = "123456"


def read_certs(card) -> dict[Slot, x509.Certificate]:  # type: ignore[no-untyped-def]
    session = PivSession(card)
    session.select()
    out = {}
    for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
        cert = session.read_certificate(slot).certificate
        assert cert is not None
        out[slot] = cert
    return out


def key_digest(card) -> str:  # type: ignore[no-untyped-def]
    return hashlib.sha256(repr(sorted((k, v.private_pem) for k, v in card.state.keys.items())).encode()).hexdigest()


async def log_on(pilot, pin: str = PIN) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
    app.screen.query_one("#pin-input", Input).focus()
    await pilot.press(*pin, "enter")


async def renew_to_end(pilot) -> None:  # type: ignore[no-untyped-def]
    """From the Card tab: u → updates available → PIN again → write → Next… → confirmation → OK."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)
    await pilot.press("u")
    await wait_for(pilot, lambda: isinstance(app.screen, MessageDialog))
    assert app.screen.id in ("updates-available-dialog", "resume-dialog")
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, PinDialog))
    assert "Do not remove your Smartcard" in screen_text(app)
    await pilot.press(*PIN, "enter")
    while True:
        await wait_for(pilot, lambda: isinstance(app.screen, (NextDialog, MessageDialog)))
        if isinstance(app.screen, MessageDialog):
            break
        dialog = app.screen
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not dialog)
    assert app.screen.id == "confirmation-dialog"
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, CardScreen) and app.screen.renewed is not None
                   and "Valid" in screen_text(app))


async def test_end_to_end_renewal(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    before = read_certs(card)
    keys_before = {k: v.private_pem for k, v in card.state.keys.items()}
    messages: list[object] = []
    app = make_app(backend)
    async with app.run_test(size=(100, 32), message_hook=messages.append) as pilot:
        await log_on(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CardScreen))
        await wait_for(pilot, lambda: "Due for renewal" in screen_text(app))
        assert "Alex Example" in screen_text(app)
        await renew_to_end(pilot)
        text = screen_text(app)
        assert "Your certificates have been renewed" in text
        assert "Due for renewal" not in text
    written = [m for m in messages if isinstance(m, CertificateWritten)]
    assert [m.slot for m in written] == [Slot.AUTHENTICATION, Slot.SIGNATURE]
    finished = [m for m in messages if isinstance(m, RenewalFinished)]
    assert len(finished) == 1 and finished[0].result.ok
    card.insert()  # a fresh power-up for reading
    after = read_certs(card)
    ca = x509.load_pem_x509_certificate((backend.issuer.directory / "ca.pem").read_bytes()) \
        if hasattr(backend.issuer, "directory") else backend.issuer.ca_certificates()[0]
    now = dt.datetime.now(dt.timezone.utc)
    for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
        old, new = before[slot], after[slot]
        assert new.serial_number != old.serial_number
        assert new.public_key().public_bytes(Encoding.DER, _spki()) != old.public_key().public_bytes(Encoding.DER, _spki())
        days = (new.not_valid_after_utc - now).days
        assert 725 <= days <= 731
        new.verify_directly_issued_by(ca)
        assert new.subject == old.subject
        assert card.state.keys[slot.hex].private_pem != keys_before[slot.hex]


def _spki():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.serialization import PublicFormat
    return PublicFormat.SubjectPublicKeyInfo
