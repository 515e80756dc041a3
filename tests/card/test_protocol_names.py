"""Issue 13: status words and instructions by name, the emulator's dispatch table built once.

A status word written as a bare number (``0x6983``) in ``card/`` cannot be found by its meaning and
drifts from :class:`card.sw.SW`; the software card's commands are looked up in one table keyed by
:class:`card.apdu.INS`, made once when the module is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from card.apdu import INS, CommandApdu
from card.emulator import card as emulator_card
from card.emulator.card import PIV_COMMANDS, YUBICO_COMMANDS, SoftPivCard
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA
from card.errors import ApduError
from card.piv import PivSession, Slot
from card.sw import SW

CARD = Path(__file__).resolve().parents[2] / "card"


def _status_word_literals(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            if node.value == 0x9000 or 0x6100 <= node.value <= 0x6FFF:
                found.append(f"{path.relative_to(CARD.parent)}:{node.lineno}: {node.value:#06X}")
    return found


def test_no_status_word_is_a_bare_number_in_card() -> None:
    """Every status word in ``card/`` is spelled by its :class:`SW` name (only card/sw.py has the numbers)."""
    found = [hit for path in sorted(CARD.rglob("*.py")) if path != CARD / "sw.py"
             for hit in _status_word_literals(path)]
    assert found == []


def test_the_status_words_we_use_are_named_as_iso_7816_4_has_them() -> None:
    assert (SW.OK, SW.SECURITY_STATUS_NOT_SATISFIED, SW.AUTHENTICATION_BLOCKED, SW.NOT_FOUND) == (
        0x9000, 0x6982, 0x6983, 0x6A82)
    assert {SW.BYTES_REMAINING, SW.WRONG_LE, SW.VERIFY_FAILED_TRIES} == {0x6100, 0x6C00, 0x63C0}


def test_every_instruction_the_piv_session_sends_has_a_handler_keyed_by_its_name() -> None:
    table = {**PIV_COMMANDS, **YUBICO_COMMANDS}
    assert all(isinstance(ins, INS) for ins in table)
    sent = {INS.SELECT, INS.GET_DATA, INS.PUT_DATA, INS.VERIFY, INS.CHANGE_REFERENCE_DATA,
            INS.RESET_RETRY_COUNTER, INS.GENERAL_AUTHENTICATE, INS.GENERATE_ASYMMETRIC_KEY_PAIR,
            INS.GET_METADATA, INS.GET_VERSION}
    assert sent <= set(table)


def test_the_card_answers_from_the_one_table(ca: LocalCA, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dispatch table is the module's, made once: a handler replaced in it is the one that
    answers (a table rebuilt inside each APDU would ignore it)."""
    card = SoftPivCard(create_card_state(ca))
    session = PivSession(card)
    session.select()
    assert session.read_certificate(Slot.AUTHENTICATION).certificate is not None

    def refuse(*_args: object) -> tuple[bytes, int]:
        return b"", SW.CONDITIONS_NOT_SATISFIED

    monkeypatch.setattr(emulator_card, "PIV_COMMANDS", {**PIV_COMMANDS, INS.GET_DATA: refuse})
    with pytest.raises(ApduError) as caught:
        session.get_data(Slot.AUTHENTICATION.object_id)
    assert caught.value.sw == SW.CONDITIONS_NOT_SATISFIED
    _, sw = session.protocol.send(CommandApdu(0x00, INS.GET_VERSION, 0x00, 0x00))
    assert sw in (SW.OK, SW.INS_NOT_SUPPORTED)  # the Yubico table is untouched
