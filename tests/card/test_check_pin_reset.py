"""After the dry run with a PIN (``renew --check``, the Card tab's *Check*), the card holds no verified
PIN: while the TUI stays logged on, no other program on the host may use the holder's keys without
the PIN (what tester F-4 found after the logon; the Check sent the PIN again and left it verified)."""

from __future__ import annotations

from card.emulator.card import SoftPivCard
from card.enrollment.local import LocalCA
from card.secret import Secret
from card.service import CheckOutcome, CheckRequest
from tests.card.test_check_dry_run import PIN, door, item

TIMEOUT_S = 60


def test_after_a_check_with_the_pin_the_card_holds_no_verified_pin(make_card, ca: LocalCA) -> None:  # type: ignore[no-untyped-def]
    card: SoftPivCard = make_card()
    backend = door(card, ca)
    try:
        report = backend.check(CheckRequest(Secret(PIN))).result(TIMEOUT_S)
        assert item(report, "pin").outcome is CheckOutcome.PASSED  # the PIN was verified by the check
        backend.read_card().result(TIMEOUT_S)  # the Card tab reads the card after the check
        assert card.pin_verified is False
    finally:
        backend.close()

