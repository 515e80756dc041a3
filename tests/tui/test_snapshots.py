"""Snapshot tests of every pane at 80×24 and 120×36 with a fixed clock, a fixed card GUID and a
fixed reference code.

The demo card is built here as ``card.demo.demo_backend`` builds it, but with a fixed ``now``
(the certificates, the CA and the new certificates then have stable dates), a CHUID with a
fixed GUID, ``card.journal``'s random reference replaced by a constant, and the Write Certificates
pane's elapsed-time clock stopped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
from pathlib import Path

import pytest
from textual.widgets import Input

from card.config import Settings
from card.emulator.card import CardFaults, SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment import local
from card.enrollment.local import LocalCA, init_ca
from card.enrollment.local_settings import LocalIssuerSettings
from card.journal import AuditLog, JournalStore
from card.piv import OBJECT_CHUID, build_chuid
from card.backend import Backend
from card.service import CardService
from tests.tui.test_renewal_flow import PIN
from tui.app import make_app
from tui.screens import (CardScreen, CompletedWithErrorsScreen, ErrorDialog, LoggedOffScreen, LogonScreen,
                         MessageDialog, NextDialog, PinDialog)
from tui.screens.dialogs import NewPinDialog

FIXED_NOW = dt.datetime(2025, 1, 15, 12, 0, tzinfo=dt.timezone.utc)
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 36), id="120x36")]


@pytest.fixture
def fixed_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``make(fault) -> (backend, card)``: a demo-like card whose every displayed value is stable."""
    monkeypatch.setattr(local, "_now", lambda: FIXED_NOW)
    import secrets

    # a fixed reference code; the audit records' event ids (never shown) stay random
    monkeypatch.setattr("card.journal.records.secrets", types.SimpleNamespace(choice=lambda seq: seq[0],
                                                                      token_hex=secrets.token_hex))
    monkeypatch.setattr("tui.screens.write_certificates.time", types.SimpleNamespace(monotonic=lambda: 1000.0))

    def make(fault: str = "none", **settings_changes):  # type: ignore[no-untyped-def]
        ca_dir = tmp_path / f"ca-{fault}"
        init_ca(ca_dir, "cardrenew Demo CA")
        settings = dataclasses.replace(Settings(), issuer=LocalIssuerSettings(ca_dir),
                                       management_key_source="default", state_dir=tmp_path / f"state-{fault}",
                                       **settings_changes)
        ca = LocalCA(ca_dir, settings.window_days, now=lambda: FIXED_NOW)
        state = create_card_state(ca, expires_in_days=30, pin=PIN, now=FIXED_NOW)
        state.objects[OBJECT_CHUID.hex().upper()] = build_chuid(bytes(range(16)), dt.date(2030, 1, 1)).hex().upper()
        faults = CardFaults(drop_at_put_data=2) if fault == "pull-card" else CardFaults()
        card = SoftPivCard(state, None, faults, name="Virtual card (demo)")
        backend = Backend(settings, CardService(lambda: card, lambda: card.present), ca,
                          JournalStore(settings.state_dir), AuditLog(settings.state_dir / "audit.log"),
                          card.name, demo=True, demo_pin=PIN)
        return backend, card

    return make


async def settle(pilot, condition) -> None:  # type: ignore[no-untyped-def]
    from tests.tui.conftest import wait_for

    await wait_for(pilot, condition)
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause()


async def to_card_tab(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await settle(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)
    app.screen.query_one("#pin-input", Input).focus()
    await pilot.press(*PIN, "enter")
    await settle(pilot, lambda: isinstance(app.screen, CardScreen) and not app.screen.workers)


async def to_write(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await to_card_tab(pilot)
    await pilot.press("u")
    await settle(pilot, lambda: isinstance(app.screen, MessageDialog))
    await pilot.press("enter")
    await settle(pilot, lambda: isinstance(app.screen, PinDialog))
    await pilot.press(*PIN, "enter")
    await settle(pilot, lambda: isinstance(app.screen, NextDialog))


def fix_certificates(card) -> None:  # type: ignore[no-untyped-def]
    """Replace the demo certificates (random keys, serials, CA) by byte-stable ones for the details view:
    the same subject, issuer and validity; a derived P-256 key, a fixed serial, a deterministic signature."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from card.certificates import decode_certificate_object, encode_certificate_object
    from card.piv import Slot

    ca_key = ec.derive_private_key(0xCA, ec.SECP256R1())
    for number, slot in enumerate((Slot.AUTHENTICATION, Slot.SIGNATURE), start=1):
        object_hex = slot.object_id.hex().upper()
        old = decode_certificate_object(bytes.fromhex(card.state.objects[object_hex]))
        assert old is not None
        new = (x509.CertificateBuilder().subject_name(old.subject).issuer_name(old.issuer)
               .public_key(ec.derive_private_key(0x1000 + number, ec.SECP256R1()).public_key())
               .serial_number(0x5EED0000 + number)
               .not_valid_before(old.not_valid_before_utc).not_valid_after(old.not_valid_after_utc)
               .sign(ca_key, hashes.SHA256(), ecdsa_deterministic=True))
        from cryptography.hazmat.primitives.serialization import Encoding
        card.state.objects[object_hex] = encode_certificate_object(new.public_bytes(Encoding.DER)).hex().upper()


async def to_logon(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await settle(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)


async def to_confirmation(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await to_write(pilot)
    dialog = app.screen
    await pilot.press("enter")  # Next after certificate 1 of 2
    await settle(pilot, lambda: isinstance(app.screen, NextDialog) and app.screen is not dialog)
    await pilot.press("enter")  # Next after certificate 2 of 2
    await settle(pilot, lambda: isinstance(app.screen, MessageDialog))


async def to_issuance_error(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await to_write(pilot)
    await pilot.press("enter")  # Next after certificate 1; the card is pulled during 2
    await settle(pilot, lambda: getattr(app.screen, "id", None) == "issuance-error-dialog")


async def shot_logon(pilot) -> None:  # type: ignore[no-untyped-def]
    await to_logon(pilot)


async def shot_logon_typed(pilot) -> None:  # type: ignore[no-untyped-def]
    await to_logon(pilot)
    pilot.app.screen.query_one("#pin-input", Input).focus()
    await pilot.press(*"123")
    await settle(pilot, lambda: True)


async def shot_card_tab(pilot) -> None:  # type: ignore[no-untyped-def]
    await to_card_tab(pilot)


async def shot_certificates_tab(pilot) -> None:  # type: ignore[no-untyped-def]
    await to_card_tab(pilot)
    await pilot.press("d")
    await settle(pilot, lambda: pilot.app.screen.query_one("#certificate-list").has_focus)


async def shot_help_tab(pilot) -> None:  # type: ignore[no-untyped-def]
    from textual.widgets import TabbedContent

    await to_card_tab(pilot)
    pilot.app.screen.query_one(TabbedContent).active = "help-tab"
    await settle(pilot, lambda: True)


async def shot_change_passcode(pilot) -> None:  # type: ignore[no-untyped-def]
    await to_card_tab(pilot)
    await pilot.press("p")
    await settle(pilot, lambda: isinstance(pilot.app.screen, NewPinDialog))


async def shot_updates_available(pilot) -> None:  # type: ignore[no-untyped-def]
    await to_card_tab(pilot)
    await pilot.press("u")
    await settle(pilot, lambda: isinstance(pilot.app.screen, MessageDialog))


async def shot_pin_again(pilot) -> None:  # type: ignore[no-untyped-def]
    await shot_updates_available(pilot)
    await pilot.press("enter")
    await settle(pilot, lambda: isinstance(pilot.app.screen, PinDialog))
    await pilot.press(*PIN)
    await settle(pilot, lambda: True)


async def shot_write_certificates_next(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await to_write(pilot)
    dialog = app.screen
    await pilot.press("enter")  # Next after certificate 1 of 2
    await settle(pilot, lambda: isinstance(app.screen, NextDialog) and app.screen is not dialog)


async def shot_confirmation(pilot) -> None:  # type: ignore[no-untyped-def]
    await to_confirmation(pilot)


async def shot_card_tab_renewed(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await to_confirmation(pilot)
    await pilot.press("enter")
    await settle(pilot, lambda: isinstance(app.screen, CardScreen) and app.screen.renewed is not None
                 and not app.screen.workers)


async def shot_issuance_error(pilot) -> None:  # type: ignore[no-untyped-def]
    await to_issuance_error(pilot)
    assert isinstance(pilot.app.screen, ErrorDialog)


async def shot_completed_with_errors(pilot) -> None:  # type: ignore[no-untyped-def]
    await to_issuance_error(pilot)
    await pilot.press("enter")  # Abort this issuance
    await settle(pilot, lambda: isinstance(pilot.app.screen, CompletedWithErrorsScreen))


async def shot_logged_off(pilot) -> None:  # type: ignore[no-untyped-def]
    await to_card_tab(pilot)
    await pilot.press("l")
    await settle(pilot, lambda: isinstance(pilot.app.screen, LoggedOffScreen))


async def shot_kiosk_logged_off(pilot) -> None:  # type: ignore[no-untyped-def]
    await to_card_tab(pilot)
    await pilot.press("l")
    await settle(pilot, lambda: isinstance(pilot.app.screen, LogonScreen) and pilot.app.summary is not None)


async def shot_unlock(pilot) -> None:  # type: ignore[no-untyped-def]
    await to_logon(pilot)
    await pilot.press("f4")
    await settle(pilot, lambda: isinstance(pilot.app.screen, NewPinDialog))


# (name, fault, settings changes, PIN tries left or None, the steps to the pane)
PANES = [
    ("logon", "none", {}, None, shot_logon),
    ("logon-pin-typed", "none", {}, None, shot_logon_typed),
    ("card-tab", "none", {}, None, shot_card_tab),
    ("certificates-tab", "none", {}, None, shot_certificates_tab),
    ("help-tab", "none", {}, None, shot_help_tab),
    ("change-passcode", "none", {}, None, shot_change_passcode),
    ("updates-available", "none", {}, None, shot_updates_available),
    ("pin-again", "none", {}, None, shot_pin_again),
    ("write-certificates-next", "none", {}, None, shot_write_certificates_next),
    ("confirmation", "none", {}, None, shot_confirmation),
    ("card-tab-renewed", "none", {}, None, shot_card_tab_renewed),
    ("issuance-error", "pull-card", {}, None, shot_issuance_error),
    ("completed-with-errors", "pull-card", {}, None, shot_completed_with_errors),
    ("logged-off", "none", {}, None, shot_logged_off),
    ("kiosk-logged-off", "none", {"kiosk": True}, None, shot_kiosk_logged_off),
    ("blocked-unlock", "none", {"allow_unlock": True}, 0, shot_unlock),
    ("high-contrast-card-tab", "none", {"theme": "high-contrast"}, None, shot_card_tab),
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("pane,fault,changes,pin_retries,steps", [pytest.param(*p, id=p[0]) for p in PANES])
def test_pane_snapshot(fixed_world, snap_compare, pane, fault, changes, pin_retries, steps, size) -> None:  # type: ignore[no-untyped-def]
    backend, card = fixed_world(fault, **changes)
    if pin_retries is not None:
        card.state.pin_retries = pin_retries
    if pane == "certificates-tab":
        fix_certificates(card)
    app = make_app(backend, now=lambda: FIXED_NOW)
    assert snap_compare(app, terminal_size=size, run_before=steps)


NARROW_PANES = ("logon", "card-tab", "write-certificates-next", "completed-with-errors")


@pytest.mark.parametrize("pane,fault,changes,pin_retries,steps",
                         [pytest.param(*p, id=p[0]) for p in PANES if p[0] in NARROW_PANES])
def test_pane_snapshot_60x20(fixed_world, snap_compare, pane, fault, changes, pin_retries, steps) -> None:  # type: ignore[no-untyped-def]
    """The main panes at 60×20 (a small SSH window): footer keys and the Status column are not cut."""
    backend, card = fixed_world(fault, **changes)
    app = make_app(backend, now=lambda: FIXED_NOW)
    assert snap_compare(app, terminal_size=(60, 20), run_before=steps)


@pytest.mark.parametrize("pane,steps", [pytest.param("logon-pin-typed", shot_logon_typed, id="logon-pin-typed"),
                                        pytest.param("change-passcode", shot_change_passcode, id="change-passcode")])
def test_no_color_snapshot(fixed_world, snap_compare, monkeypatch: pytest.MonkeyPatch, pane, steps) -> None:  # type: ignore[no-untyped-def]
    """Under NO_COLOR the focused input is marked by its border/text style, not by colour."""
    monkeypatch.setenv("NO_COLOR", "1")
    backend, _ = fixed_world()
    app = make_app(backend, now=lambda: FIXED_NOW)
    assert snap_compare(app, terminal_size=(80, 24), run_before=steps)
