"""The Card tab's *Days left* follows the expiry date it shows (tester F-7, cosmetic): after a renewal
both slots expired on 2028-12-03, one issued 8 s after the other, and the tab showed 730 and 731.
Pilot on the demo card, its two certificates re-issued by the demo CA (same keys) to expire on one
day 8 s apart, the app's clock between the two times of day."""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives.serialization import Encoding

from card.certificates import decode_certificate_object, encode_certificate_object
from card.piv import Slot
from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_card_tab import to_card
from tui.app import make_app
from tui.screens import CardScreen

UTC = dt.timezone.utc


def reissue(card, ca, slot: Slot, not_after: dt.datetime) -> None:  # type: ignore[no-untyped-def]
    """``slot``'s certificate again, same subject and key, expiring at ``not_after``."""
    object_hex = slot.object_id.hex().upper()
    old = decode_certificate_object(bytes.fromhex(card.state.objects[object_hex]))
    assert old is not None
    new = ca.issue_initial(old.subject, old.public_key(), slot.hex, not_after - dt.timedelta(days=365), not_after)
    card.state.objects[object_hex] = encode_certificate_object(new.public_bytes(Encoding.DER)).hex().upper()


async def test_two_certificates_expiring_the_same_day_show_the_same_days_left(make_demo) -> None:  # type: ignore[no-untyped-def]
    backend, card = make_demo()
    today = dt.datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    expiry = today + dt.timedelta(days=730)
    reissue(card, backend.issuer, Slot.AUTHENTICATION, expiry)
    reissue(card, backend.issuer, Slot.SIGNATURE, expiry + dt.timedelta(seconds=8))
    app = make_app(backend, now=lambda: today + dt.timedelta(seconds=4))  # 9A: 729 d 23:59:56 left, 9C: 730 d 4 s
    async with app.run_test(size=(100, 32)) as pilot:
        await to_card(pilot)
        screen = app.screen
        assert isinstance(screen, CardScreen)
        shown = [str(label.render()) for label in screen.query(".slot-expiry")][1:]  # after the header
        days = [str(label.render()) for label in screen.query(".slot-days")][1:]
        assert shown == [f"{expiry:%Y-%m-%d}"] * 2, shown
        assert days == ["730", "730"], days
        await pilot.press("d")  # the Certificates tab says the same
        await wait_for(pilot, lambda: "(730 days left)" in screen_text(app))
        assert "(731 days left)" not in screen_text(app)
