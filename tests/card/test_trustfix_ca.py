"""Break-it findings 1 and 3 (breakit2): the CA is reached before the card transaction starts, and a
reply over ``issuer.max_response_bytes`` is not asked for again.

Before: GetCACert ran inside the renewal's card transaction (on the card worker), so a CA that did not
answer held the card for 4 × timeout_s + back-off (74 s; every `status` meanwhile was BUSY), and a
reply too large was fetched four times (it will not get smaller). The real ``cardrenew`` code runs in
process (``tui.cli.main``) on the in-process card; the transaction-through-pcscd side is
tests/integration/test_hostile_ca_pcscd.py."""

from __future__ import annotations

import threading

import pytest

from card.emulator.card import SoftPivCard, state_digest
from card.emulator.create import create_card_state
from card.enrollment.base import IssuerUnavailable
from card.enrollment.http import ResponseTooLarge
from card.enrollment.local import LocalCA
from card.piv import KeyType
from tests.card.test_breakit_engine import cli
from tests.card.test_never_worse import LostAnswerCA


class WatchedCA(LostAnswerCA):
    """Delegates to the CA; records on which thread the CA certificates are asked for and may fail them."""

    def __init__(self, ca: LocalCA, failure: IssuerUnavailable | None = None) -> None:
        super().__init__(ca)
        self.down = False
        self.failure = failure
        self.calls: list[str] = []

    def ca_certificates(self):  # type: ignore[no-untyped-def]
        self.calls.append(threading.current_thread().name)
        if self.failure is not None:
            raise self.failure
        return super().ca_certificates()


@pytest.mark.parametrize("pin_stdin_yes", [True, False])
def test_the_ca_is_reached_before_the_card_transaction(ca: LocalCA, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], pin_stdin_yes: bool) -> None:
    card = SoftPivCard(create_card_state(ca, expires_in_days=30, key_type=KeyType.ECCP256))
    issuer = WatchedCA(ca)
    if not pin_stdin_yes:
        monkeypatch.setattr("tui.cli.renew._confirmed", lambda summary, pin: True)  # the holder says yes
    args = ("renew", "--pin-stdin", "--yes") if pin_stdin_yes else ("renew", "--pin-stdin")
    code, out, err = cli(monkeypatch, capsys, card, issuer, *args)
    assert code == 0 and out["outcome"] == "renewed", (out, err)
    assert issuer.calls and issuer.calls[0] == threading.main_thread().name, issuer.calls


def test_an_unreachable_ca_changes_nothing_and_is_exit_12(ca: LocalCA, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    card = SoftPivCard(create_card_state(ca, expires_in_days=30, key_type=KeyType.ECCP256))
    before = state_digest(card.state)
    monkeypatch.setattr("card.renewal.context.RenewalContext.issuer_retry_delays_s", (0.0, 0.0, 0.0))
    issuer = WatchedCA(ca, IssuerUnavailable("no answer"))
    code, out, err = cli(monkeypatch, capsys, card, issuer, "renew", "--pin-stdin", "--yes")
    assert code == 12 and out["error"]["code"] == "CA-DOWN", (out, err)
    assert set(issuer.calls) == {threading.main_thread().name} and len(issuer.calls) == 4  # retried, card not held
    assert state_digest(card.state) == before


def test_a_reply_too_large_is_not_asked_for_again(ca: LocalCA, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    card = SoftPivCard(create_card_state(ca, expires_in_days=30, key_type=KeyType.ECCP256))
    before = state_digest(card.state)
    monkeypatch.setattr("card.renewal.context.RenewalContext.issuer_retry_delays_s", (0.0, 0.0, 0.0))
    issuer = WatchedCA(ca, ResponseTooLarge("the answer is larger than 1048576 bytes (issuer.max_response_bytes)"))
    code, out, err = cli(monkeypatch, capsys, card, issuer, "renew", "--pin-stdin", "--yes")
    assert code == 12 and out["error"]["code"] == "CA-TOO-LARGE", (out, err)
    assert len(issuer.calls) == 1, issuer.calls
    assert state_digest(card.state) == before
