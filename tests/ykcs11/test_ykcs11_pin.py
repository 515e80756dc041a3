"""Wrong and blocked PINs through libykcs11 (issue 14 "Done when"): what `cardrenew renew` says at
each try — the token's own flags (CKF_USER_PIN_COUNT_LOW, _FINAL_TRY, _LOCKED) are all it has — and
that nothing on the card changed but the PIN counter."""

from __future__ import annotations

from pathlib import Path

import pytest

from card.emulator.state import CardState
from tests.ykcs11.pcscd import YkPcscd
from tests.ykcs11.renewal import Workdir, all_but_the_pin_counter

pytestmark = pytest.mark.pcscd


def _renew(work: Workdir, pin: str, *extra: str) -> tuple[int, str]:
    done = work.cardrenew("renew", "--pin-stdin", "--yes", *extra, stdin=pin + "\n")
    return done.returncode, done.stderr


def test_wrong_pins_through_ykcs11_say_what_the_token_says_and_change_nothing_but_the_counter(
        yk_pcscd: YkPcscd, yk_card, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    work = Workdir.make(tmp_path / "work", yk_pcscd)
    card = yk_card(issuer=work.ca)
    before = all_but_the_pin_counter(card.state)

    code, said = _renew(work, "000000")
    assert code == 4 and "Wrong PIN" in said and "few tries are left" in said, said  # CKF_USER_PIN_COUNT_LOW
    code, said = _renew(work, "000000")
    assert code == 4 and "1 try left before your card is blocked" in said, said  # CKF_USER_PIN_FINAL_TRY
    code, said = _renew(work, "123456")  # even the right PIN is not sent on the last try without consent
    assert code == 4 and "no try was used" in said, said
    assert CardState.load(card.state).pin_retries == 1
    assert work.status()["pin_retries"] == 1

    code, said = _renew(work, "000000", "--allow-last-pin-try")
    assert code == 4 and "Card blocked" in said and "Registration Authority" in said, said  # CKF_USER_PIN_LOCKED
    code, said = _renew(work, "123456", "--allow-last-pin-try")
    assert code == 4 and "Card blocked" in said, said  # CKR_PIN_LOCKED even with the right PIN
    assert CardState.load(card.state).pin_retries == 0
    assert all_but_the_pin_counter(card.state) == before  # no key, certificate or object changed
