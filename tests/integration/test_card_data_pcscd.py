"""Bad card data through the real stack (issue 11 items 6 and 8): the real `cardrenew` process,
pcscd, vpcd and the served card; OpenSC judges the renewed certificates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from card.certificates import decode_certificate_object, encode_certificate_object
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA
from card.piv import KeyType, Slot
from tests.card.test_card_data import corrupt_subject, resigned
from tests.integration.conftest import run_cardrenew
from tests.integration.test_field_reports_pcscd import pkcs15_read, serve_state  # noqa: F401 - fixture

pytestmark = pytest.mark.pcscd
DER = serialization.Encoding.DER


def der_in(state, slot: Slot) -> bytes:  # type: ignore[no-untyped-def]
    cert = decode_certificate_object(bytes.fromhex(state.objects[slot.object_id.hex().upper()]))
    assert cert is not None
    return cert.public_bytes(DER)


def test_a_corrupted_subject_is_one_unreadable_slot_and_status_exits_11(serve_state, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    state = create_card_state(LocalCA(workdir / "ca"), key_type=KeyType.ECCP256)
    state.objects["5FC105"] = encode_certificate_object(corrupt_subject(der_in(state, Slot.AUTHENTICATION))).hex().upper()
    serve_state(state)
    out = run_cardrenew(workdir, "status", "--json")
    assert out.returncode == 11, out.stdout + out.stderr
    status = json.loads(out.stdout)
    slots = {s["slot"]: s for s in status["slots"]}
    assert slots["9A"]["state"] == "unreadable" and "subject name does not decode" in slots["9A"]["error"]
    assert slots["9C"]["state"] == "due" and status["holder"] == "Alex Example"


def test_negative_serials_are_shown_with_a_note_and_renewed(serve_state, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    ca = LocalCA(workdir / "ca")
    state = create_card_state(ca, key_type=KeyType.ECCP256)
    for slot, serial in ((Slot.AUTHENTICATION, -0x3039), (Slot.SIGNATURE, -1)):
        state.objects[slot.object_id.hex().upper()] = encode_certificate_object(
            resigned(der_in(state, slot), ca, serial)).hex().upper()
    serve_state(state)
    out = run_cardrenew(workdir, "status", "--json")
    assert out.returncode == 10, out.stdout + out.stderr  # due, not refused as unreadable
    slots = {s["slot"]: s for s in json.loads(out.stdout)["slots"]}
    assert (slots["9A"]["serial"], slots["9C"]["serial"]) == ("-3039", "-1")
    assert all(s["state"] == "due" and "negative serial number" in s["note"] for s in slots.values())
    assert "Warning" not in out.stderr and "Deprecation" not in out.stderr

    out = run_cardrenew(workdir, "renew", "--pin-stdin", "--yes", "--json", stdin="123456\n")
    assert out.returncode == 0, out.stdout + out.stderr
    renewed = {s["slot"]: s for s in json.loads(out.stdout)["slots"]}
    assert renewed["9A"]["old_serial"] == "-3039" and not renewed["9A"]["new_serial"].startswith("-")
    for pkcs15_id, slot in (("01", "9A"), ("02", "9C")):  # OpenSC reads what we wrote
        assert f"{pkcs15_read(pkcs15_id).serial_number:X}" == renewed[slot]["new_serial"]
