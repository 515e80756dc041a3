"""Break-it round on 3d0e64d/ab47c29, the renewal engine: a slot left alone because someone else
changed it is not a failure of the run; a card near its own (CHUID) expiry is not "renewed" with
shorter certificates; a journal set aside mid-renewal does not leave the card stuck.

The real ``cardrenew`` code paths run in process (``tui.cli.main``) on the in-process card."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest

from card.config import Settings
from card.emulator.card import SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA
from card.journal import AuditLog, JournalStore
from card.piv import KeyType, PivSession, Slot
from card.renewal import RenewalContext, renew
from card.secret import Secret
from card.service import CardService
from tests.card.test_never_worse import (LostAnswerCA, certificate_on, reissue, set_card_expiry,
                                         slot_works)

PIN = "123456"
A, C = Slot.AUTHENTICATION, Slot.SIGNATURE


def engine_context(issuer: object) -> RenewalContext:
    s = Settings()  # $XDG_STATE_HOME/cardrenew: a temp dir per test (conftest), the CLI's too
    return RenewalContext(s, issuer, JournalStore(s.state_dir), AuditLog(s.state_dir / "audit.log"),  # type: ignore[arg-type]
                          issuer_retry_delays_s=())


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], card: SoftPivCard, issuer: object,
        *args: str) -> tuple[int, dict, str]:
    """``cardrenew ARGS --json`` on the in-process ``card``: (exit code, JSON output, stderr)."""
    from tui.cli import main

    monkeypatch.setattr("card.pcsc.choose_reader", lambda named=None: "Virtual card")
    monkeypatch.setattr("card.backend.pcsc_service", lambda name, *_, **__: CardService(lambda: card, lambda: True))
    monkeypatch.setattr("card.backend.build_issuer", lambda settings, *_, **__: issuer)
    monkeypatch.setattr("sys.stdin", io.StringIO(PIN + "\n"))
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


# -- finding 4: a slot left alone is not a failed run -------------------------------------------------
def test_a_slot_changed_elsewhere_is_left_alone_and_the_run_is_renewed(ca: LocalCA, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """9A stopped after GENERATE (the CA's answer lost), then the RA re-issued 9A. The resume leaves
    9A alone and renews 9C: ab47c29 called that "completed with errors", exit 13."""
    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256))
    lossy = LostAnswerCA(ca)
    assert renew(PivSession(card), engine_context(lossy), Secret(PIN)).journal_kept
    ra_cert = reissue(card, ca, A)
    lossy.down = False
    code, out, err = cli(monkeypatch, capsys, card, lossy, "renew", "--pin-stdin", "--yes")
    assert code == 0 and out["outcome"] == "renewed", (out, err)
    by_slot = {s["slot"]: s for s in out["slots"]}
    assert by_slot["9C"]["renewed"] and not by_slot["9C"]["left_alone"]
    assert not by_slot["9A"]["renewed"] and by_slot["9A"]["left_alone"]
    assert "changed by someone else" in by_slot["9A"]["error"]
    assert "Authentication (9A) had been changed by someone else and was left alone" in out["message"]
    assert "Registration Authority" in out["next_step"]
    assert certificate_on(card, A) == ra_cert and slot_works(card, A) and slot_works(card, C)


# -- finding 2: a card close to its own expiry ---------------------------------------------------------
class ShortCA(LostAnswerCA):
    """The embedded CA, answering at once (it issues within the card's own expiry)."""

    def __init__(self, ca: LocalCA) -> None:
        super().__init__(ca)
        self.down = False
        self.asked = 0

    def authorize_renewal(self, *args):  # type: ignore[no-untyped-def]
        self.asked += 1
        return super().authorize_renewal(*args)


def test_a_card_expiring_within_the_window_is_refused_in_preflight(ca: LocalCA, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """CHUID expiry in 10 days, certificates due in 30: ab47c29 "renewed" them to 10 days (shorter than
    before), and status then said "due" again. Now renew refuses (exit 11) and changes nothing."""
    card = SoftPivCard(create_card_state(ca, expires_in_days=30, key_type=KeyType.ECCP256))
    expiry = dt.date.today() + dt.timedelta(days=10)
    set_card_expiry(card, expiry)
    before = ({k: v.private_pem for k, v in card.state.keys.items()}, dict(card.state.objects))
    issuer = ShortCA(ca)
    code, out, err = cli(monkeypatch, capsys, card, issuer, "renew", "--pin-stdin", "--yes")
    assert code == 11, (out, err)
    assert out["error"]["code"] == "CARD-EXPIRED"
    assert f"your card itself expires on {expiry.isoformat()}" in out["error"]["message"]
    assert "nothing was changed" in out["error"]["message"]
    assert "for a new card" in out["error"]["next_step"]
    assert ({k: v.private_pem for k, v in card.state.keys.items()}, dict(card.state.objects)) == before
    # no PIN sent (only the CLI's empty VERIFY asking the tries left), nothing generated or written
    assert issuer.asked == 0 and not [a for a, _ in card.trace if a[1] in (0x47, 0xDB) or (a[1] == 0x20 and len(a) > 4)]

    code, out, err = cli(monkeypatch, capsys, card, issuer, "status")
    assert code == 11 and out["card_expiry"] == expiry.isoformat(), out
    from tui.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["status"]) == 11
    text = capsys.readouterr().out
    assert f"expires {expiry.isoformat()}" in text
    assert f"This card itself expires on {expiry.isoformat()}" in text and "for a new card" in text


def test_status_of_an_expired_card_says_so_and_exits_11(ca: LocalCA, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """ab47c29 showed a card whose CHUID had expired only as "due for renewal", exit 10."""
    card = SoftPivCard(create_card_state(ca, expires_in_days=20, key_type=KeyType.ECCP256))
    expiry = dt.date.today() - dt.timedelta(days=3)
    set_card_expiry(card, expiry)
    code, out, _ = cli(monkeypatch, capsys, card, ShortCA(ca), "status")
    assert code == 11 and out["exit_code"] == 11 and out["card_expiry"] == expiry.isoformat()
    from tui.cli import main

    assert main(["status"]) == 11
    text = capsys.readouterr().out
    assert f"This card itself expired on {expiry.isoformat()}" in text and "for a new card" in text


def test_a_card_far_from_its_expiry_is_renewed_and_status_shows_the_expiry(ca: LocalCA,
                                                                            monkeypatch: pytest.MonkeyPatch,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    card = SoftPivCard(create_card_state(ca, expires_in_days=30, key_type=KeyType.ECCP256))
    expiry = dt.date.today() + dt.timedelta(days=400)
    set_card_expiry(card, expiry)
    code, out, _ = cli(monkeypatch, capsys, card, ShortCA(ca), "status")
    assert code == 10 and out["card_expiry"] == expiry.isoformat()
    code, out, err = cli(monkeypatch, capsys, card, ca, "renew", "--pin-stdin", "--yes")
    assert code == 0 and out["outcome"] == "renewed", (out, err)


# -- finding 8: a slot whose key no longer matches its certificate -----------------------------------
def test_a_slot_whose_key_no_longer_matches_is_named_and_nothing_else_is_touched(
        ca: LocalCA, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The card was pulled at 9A's PUT DATA (9A: a new key, the old certificate), then the journal was cut
    short and set aside as corrupt. Before: exit 12 "the certificate authority refused … Nothing was
    changed on your card" — a CA refusal, which it is not. The words name the mismatch and the set-aside
    journal, and the run stops before 9C (d6d30eb renewed 9C after it; the state machine then lost 9C's
    key, 3a2259d): 9C keeps its key and certificate for the RA to see to both."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from card.emulator.card import install_key
    from card.renewal import read_card
    from tests.card.test_never_worse import private_pem

    card = SoftPivCard(create_card_state(ca, expires_in_days=30, key_type=KeyType.ECCP256))
    old_9a, old_9c, old_9c_key = certificate_on(card, A), certificate_on(card, C), private_pem(card, C)
    install_key(card.state, A, ec.generate_private_key(ec.SECP256R1()), KeyType.ECCP256)  # GENERATE done, no PUT DATA
    state = Settings().state_dir
    state.mkdir(parents=True, exist_ok=True)
    card_id = read_card(PivSession(card), Settings()).card_id
    assert card_id is not None
    journal = state / JournalStore.file_name(card_id)
    journal.write_text('{"version": 1, "card_id": "' + card_id + '", "slots": {"9A": {"st')  # cut short

    code, out, err = cli(monkeypatch, capsys, card, ca, "renew", "--pin-stdin", "--yes")
    assert code == 11 and out["error"]["code"] == "KEY-MISMATCH", (out, err)
    words = out["error"]["message"]
    assert "slot 9A's key does not match its certificate" in words and "interrupted" in words
    aside = sorted(state.glob(journal.name + ".corrupt-*"))
    assert aside and f"the set-aside journal of that update is at {aside[-1]}" in words
    assert "Nothing was changed on your card" not in json.dumps(out)
    assert out["error"]["reference"] in out["error"]["next_step"] and "re-issued" in out["error"]["next_step"]
    assert certificate_on(card, A) == old_9a  # 9A left for the RA, nothing written
    assert certificate_on(card, C) == old_9c and private_pem(card, C) == old_9c_key and slot_works(card, C)
    assert not list(state.glob(journal.name))  # no journal that would ask again (no resume loop)
