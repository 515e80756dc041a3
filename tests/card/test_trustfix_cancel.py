"""Break-it finding 8 (breakit2): SIGTERM/SIGHUP after the CA granted but before any card change.
Before: exit 13 ``completed_with_errors`` with the journal kept (and `status` then said "An unfinished
update … will be resumed") although nothing on the card had changed; the README promises 128 +
signal with ``CANCELLED``. The grants alone need no journal: a later run asks for them afresh.

The real ``cardrenew`` code runs in process (``tui.cli.main``) on the in-process card; the signal is
a real SIGTERM to this process, handled by renew's own handler."""

from __future__ import annotations

import os
import signal

import pytest

from card.config import Settings
from card.emulator.card import SoftPivCard, state_digest
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA
from card.piv import KeyType
from tests.card.test_breakit_engine import cli
from tests.card.test_never_worse import LostAnswerCA


class SignalAfterGrantCA(LostAnswerCA):
    """Grants as the CA does; after the last grant the process gets ``signum`` (the operator's kill)."""

    def __init__(self, ca: LocalCA, signum: int, grants: int = 2) -> None:
        super().__init__(ca)
        self.down = False
        self.signum, self.left = signum, grants

    def authorize_renewal(self, *args):  # type: ignore[no-untyped-def]
        grant = super().authorize_renewal(*args)
        self.left -= 1
        if self.left == 0:
            os.kill(os.getpid(), self.signum)
        return grant


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_after_the_grants_before_any_card_change_is_128_plus_signal(
        ca: LocalCA, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], signum: int) -> None:
    card = SoftPivCard(create_card_state(ca, expires_in_days=30, key_type=KeyType.ECCP256))
    before = state_digest(card.state)
    code, out, err = cli(monkeypatch, capsys, card, SignalAfterGrantCA(ca, signum), "renew", "--pin-stdin", "--yes")
    assert code == 128 + signum and out["error"]["code"] == "CANCELLED", (out, err)
    assert "nothing was changed" in out["error"]["message"].lower()
    assert state_digest(card.state) == before
    assert not list(Settings().state_dir.glob("journal-*.json"))  # nothing to resume: status says no update is pending
    code, out, err = cli(monkeypatch, capsys, card, ca, "status")
    assert code == 10 and out["pending_reference"] is None, (out, err)
    code, out, err = cli(monkeypatch, capsys, card, ca, "renew", "--pin-stdin", "--yes")  # a later run renews
    assert code == 0 and out["outcome"] == "renewed", (out, err)
