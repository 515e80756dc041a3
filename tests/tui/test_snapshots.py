"""Snapshot tests at 80×24 with a fixed clock, a fixed card GUID and a fixed reference code.

The demo card is built here as ``card.demo.demo_backend`` builds it, but with a fixed ``now``
(the certificates, the CA and the new certificates then have stable dates), a CHUID with a
fixed GUID, and ``card.journal``'s random reference replaced by a constant.
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
from card.journal import AuditLog, JournalStore
from card.piv import OBJECT_CHUID, build_chuid
from card.service import Backend, CardService
from tests.tui.test_renewal_flow import PIN
from tui.app import make_app
from tui.screens import CardScreen, CompletedWithErrorsScreen, LogonScreen, MessageDialog, NextDialog, PinDialog

FIXED_NOW = dt.datetime(2025, 1, 15, 12, 0, tzinfo=dt.timezone.utc)
SIZE = (80, 24)


@pytest.fixture
def fixed_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``make(fault) -> (backend, card)``: a demo-like card whose every displayed value is stable."""
    monkeypatch.setattr(local, "_now", lambda: FIXED_NOW)
    monkeypatch.setattr("card.journal.secrets", types.SimpleNamespace(choice=lambda seq: seq[0]))

    def make(fault: str = "none"):  # type: ignore[no-untyped-def]
        ca_dir = tmp_path / f"ca-{fault}"
        init_ca(ca_dir, "cardrenew Demo CA")
        settings = dataclasses.replace(Settings(), issuer_type="local", issuer_directory=ca_dir,
                                       management_key_source="default", state_dir=tmp_path / f"state-{fault}")
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


def test_logon_snapshot(fixed_world, snap_compare) -> None:  # type: ignore[no-untyped-def]
    backend, _ = fixed_world()
    app = make_app(backend, now=lambda: FIXED_NOW)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot, lambda: isinstance(app.screen, LogonScreen) and app.summary is not None)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_card_tab_snapshot(fixed_world, snap_compare) -> None:  # type: ignore[no-untyped-def]
    backend, _ = fixed_world()
    app = make_app(backend, now=lambda: FIXED_NOW)
    assert snap_compare(app, terminal_size=SIZE, run_before=to_card_tab)


def test_write_certificates_done_snapshot(fixed_world, snap_compare) -> None:  # type: ignore[no-untyped-def]
    backend, _ = fixed_world()
    app = make_app(backend, now=lambda: FIXED_NOW)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await to_write(pilot)
        dialog = app.screen
        await pilot.press("enter")  # Next after certificate 1 of 2
        await settle(pilot, lambda: isinstance(app.screen, NextDialog) and app.screen is not dialog)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_completed_with_errors_snapshot(fixed_world, snap_compare) -> None:  # type: ignore[no-untyped-def]
    backend, _ = fixed_world("pull-card")
    app = make_app(backend, now=lambda: FIXED_NOW)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await to_write(pilot)
        await pilot.press("enter")  # Next after certificate 1; the card is pulled during 2
        await settle(pilot, lambda: getattr(app.screen, "id", None) == "issuance-error-dialog")
        await pilot.press("enter")  # Abort this issuance
        await settle(pilot, lambda: isinstance(app.screen, CompletedWithErrorsScreen))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
