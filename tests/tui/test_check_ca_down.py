"""The Card tab's *Check* with a CA that accepts the connection and never answers (tester F-10): the
same report as ``cardrenew renew --check`` — the CA check failed once, the checks that need the CA
skipped because it could not be reached, and the CA asked once. Pilot on the demo card, its issuer
the real SCEP issuer pointed at a silent loopback server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from card.backend import build_issuer
from card.config import load_settings
from tests.card.test_check_ca_unreachable import CA_DOWN, SilentCA, config
from tests.tui.conftest import wait_for
from tests.tui.test_check_action import destructive_sent, open_check, report_of
from tests.tui.test_renewal_flow import PIN
from tui.app import make_app


@pytest.fixture
def silent_ca() -> Iterator[SilentCA]:
    server = SilentCA()
    yield server
    server.close()


async def test_check_with_the_ca_unreachable_skips_what_needs_it(make_demo, silent_ca: SilentCA,  # type: ignore[no-untyped-def]
                                                                tmp_path: Path) -> None:
    backend, card = make_demo()
    backend.issuer = build_issuer(load_settings(Path(config(tmp_path, silent_ca.port))))
    app = make_app(backend)
    async with app.run_test(size=(110, 50)) as pilot:
        await open_check(pilot)
        await pilot.press(*PIN, "enter")
        text = await report_of(pilot)
        assert "Some checks failed" in text and "FAILED   Certificate authority: " in text
        assert "cannot certify" not in text, text
        said = CA_DOWN[0].upper() + CA_DOWN[1:]
        for slot in ("9A", "9C"):
            assert f"skipped  Renewal grant ({slot}): {said}." in text, text
            assert f"skipped  Key algorithm ({slot}): RSA2048: the card lists it; " in text, text
        await wait_for(pilot, lambda: silent_ca.accepted >= 1)
    assert silent_ca.accepted == 1
    assert destructive_sent(card) == []
