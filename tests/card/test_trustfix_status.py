"""Break-it findings 2 and 4 (breakit2): ``status`` called a slot that cannot sign for its certificate
"due for renewal, 30 days left" (exit 10, ``state: "due"``) — a slot whose key an unfinished update
replaced (the journal says "generated", the old certificate still shown), and a slot whose key does not
match its certificate, which a Yubico card tells without a PIN (GET METADATA, tag 04). Now such a slot
is ``unfinished`` (exit 13, run ``renew``) or ``key_mismatch`` (exit 11), with words and the next step.

The real ``cardrenew`` code runs in process (``tui.cli.main``) on the in-process card."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from card.emulator.card import SoftPivCard, install_key
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA
from card.piv import KeyType, PivSession, Slot
from card.renewal import renew
from card.secret import Secret
from tests.card.test_breakit_engine import cli, engine_context
from tests.card.test_never_worse import LostAnswerCA

A, C = Slot.AUTHENTICATION, Slot.SIGNATURE


def by_slot(out: dict) -> dict[str, dict]:
    return {s["slot"]: s for s in out["slots"]}


def test_a_slot_whose_key_an_unfinished_update_replaced_is_not_due(
        ca: LocalCA, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    card = SoftPivCard(create_card_state(ca, expires_in_days=30, key_type=KeyType.ECCP256))
    lossy = LostAnswerCA(ca)  # 9A: GENERATE done, the CA's answer lost: new key, old certificate
    assert renew(PivSession(card), engine_context(lossy), Secret("123456")).journal_kept
    code, out, err = cli(monkeypatch, capsys, card, ca, "status")
    slots = by_slot(out)
    assert slots["9A"]["state"] == "unfinished", slots["9A"]
    assert "does not work until the unfinished update" in slots["9A"]["note"]
    assert "cardrenew renew" in slots["9A"]["note"] and out["pending_reference"] in slots["9A"]["note"]
    assert slots["9C"]["state"] == "due"  # untouched by the update (its GENERATE never came)
    assert code == 13, (out, err)
    code, text, _ = status_text(monkeypatch, capsys, card, ca)
    assert "PIV Authentication (9A): does not work until the unfinished update" in text
    # the update finishes and the card is healthy again
    code, out, err = cli(monkeypatch, capsys, card, ca, "renew", "--pin-stdin", "--yes")
    assert code == 0, (out, err)
    code, out, _ = cli(monkeypatch, capsys, card, ca, "status")
    assert code == 0 and {s["state"] for s in out["slots"]} == {"ok"}


def status_text(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], card: SoftPivCard,
                ca: LocalCA) -> tuple[int, str, str]:
    from tui.cli import main

    monkeypatch.setattr("card.pcsc.choose_reader", lambda named=None: "Virtual card")
    from card.service import CardService
    monkeypatch.setattr("card.backend.pcsc_service", lambda name, *_, **__: CardService(lambda: card, lambda: True))
    code = main(["status"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("slot", [A, C])
def test_a_yubikey_slot_whose_key_is_not_its_certificates_is_flagged_without_a_pin(
        ca: LocalCA, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], slot: Slot) -> None:
    card = SoftPivCard(create_card_state(ca, expires_in_days=30, key_type=KeyType.ECCP256, profile="yubikey5"))
    install_key(card.state, slot, ec.generate_private_key(ec.SECP256R1()), KeyType.ECCP256)
    retries = card.state.pin_retries
    code, out, err = cli(monkeypatch, capsys, card, ca, "status")
    entry = by_slot(out)[slot.hex]
    assert entry["state"] == "key_mismatch", entry
    assert f"the key in slot {slot.hex} does not match its certificate" in entry["note"]
    assert "re-issued" in entry["note"]
    other = by_slot(out)[(C if slot == A else A).hex]
    assert other["state"] == "due"
    assert code == 11, (out, err)
    assert card.state.pin_retries == retries  # no PIN was sent


def test_a_plain_piv_card_is_not_judged_without_a_pin(ca: LocalCA, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Plain PIV has no metadata: without the PIN the mismatch cannot be seen; status says what it can."""
    card = SoftPivCard(create_card_state(ca, expires_in_days=30, key_type=KeyType.ECCP256))
    code, out, _ = cli(monkeypatch, capsys, card, ca, "status")
    assert code == 10 and {s["state"] for s in out["slots"]} == {"due"}
