"""The Card tab on bad card data (issue 11 items 6 and 8): a slot whose certificate does not decode
shows as unreadable with the reason while the other slot works; a negative serial is shown with a note."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from textual.widgets import DataTable

from card.certificates import encode_certificate_object
from card.enrollment.local import LocalCA
from card.piv import Slot
from tests.card.test_card_data import corrupt_subject, resigned
from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_card_tab import to_card
from tests.tui.test_renewal_flow import read_certs
from tui.app import make_app

DER = serialization.Encoding.DER


async def test_a_corrupted_subject_shows_one_unreadable_slot_and_the_other_works(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    der = read_certs(card)[Slot.AUTHENTICATION].public_bytes(DER)
    card.state.objects["5FC105"] = encode_certificate_object(corrupt_subject(der)).hex()
    app = make_app(backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await to_card(pilot)
        status_9a = str(app.screen.query_one("#status-9a").render())
        status_9c = str(app.screen.query_one("#status-9c").render())
        assert status_9a.startswith("Unreadable:") and "subject name does not decode" in status_9a
        assert "Due" in status_9c
        assert "Alex Example" in screen_text(app)  # the holder, from 9C


async def test_a_negative_serial_is_shown_with_a_note(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    assert isinstance(backend.issuer, LocalCA)
    der = resigned(read_certs(card)[Slot.SIGNATURE].public_bytes(DER), backend.issuer, -0x3039)
    card.state.objects["5FC10A"] = encode_certificate_object(der).hex()
    app = make_app(backend)
    async with app.run_test(size=(120, 36)) as pilot:
        await to_card(pilot)
        assert "Due" in str(app.screen.query_one("#status-9c").render())
        assert "Digital Signature (9C): this certificate has a negative serial number" in screen_text(app)
        await pilot.press("d")
        await wait_for(pilot, lambda: app.screen.query_one("#certificate-list", DataTable).has_focus)
        await pilot.press("down")
        await wait_for(pilot, lambda: "(9C)" in str(app.screen.query_one("#certificate-details").render()))
        details = str(app.screen.query_one("#certificate-details").render())
        assert "Serial       -3039" in details and "Note         this certificate has a negative serial" in details
