"""The ``-vv`` APDU trace hides every secret and every PIN-protected object (issue 12 item 7):
with ``source = "pin-protected"`` the GET DATA reply of ``5FC109`` (``53 1C 88 1A 89 18 <key>``)
was logged in clear."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from card.apdu import PUBLIC_OBJECTS, TRAFFIC, ApduProtocol, CommandApdu
from card.config import Settings
from card.enrollment.local import LocalCA
from card.piv import PivSession
from card.renewal import renew
from card.secret import Secret
from tests.card.test_mgmtkey_sources import PIN, card_with_key, ctx
from tests.leaks import leaks

SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=60)


def test_a_renewal_with_a_pin_protected_management_key_traces_no_byte_of_it(
        ca: LocalCA, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = os.urandom(24)
    card = card_with_key(ca, key, pin_protected=True)
    settings = Settings(management_key_source="pin-protected", management_key_sources=("pin-protected",))
    with caplog.at_level(TRAFFIC, logger="card.apdu"):
        assert renew(PivSession(card), ctx(tmp_path, ca, settings), Secret(PIN)).ok
    trace = caplog.text
    assert "5C 03 5F C1 09" in trace  # the object was read (and its reply hidden)
    assert "5C 03 5F C1 02" in trace and "53 " in trace  # public objects are still traced
    assert leaks(trace, key) == []
    assert leaks(trace, PIN.encode()) == []


class Scripted:
    """A transport answering from a script of (data, SW) pairs, recording what it was sent."""

    name = "scripted"

    def __init__(self, answers: list[tuple[bytes, int]]) -> None:
        self.answers = answers
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(apdu)
        return self.answers.pop(0)

    def transaction(self):  # type: ignore[no-untyped-def]
        from card.transport import no_transaction

        return no_transaction()

    def close(self) -> None:
        pass


def get_data(obj: bytes) -> CommandApdu:
    return CommandApdu(0, 0xCB, 0x3F, 0xFF, b"\x5c" + bytes([len(obj)]) + obj)


def test_a_secret_reply_split_by_61xx_is_hidden_in_every_get_response(caplog: pytest.LogCaptureFixture) -> None:
    key = os.urandom(32)
    value = bytes.fromhex("531e881c891a") + key  # 5FC109 holding an AES-256 key
    proto = ApduProtocol(Scripted([(value[:10], 0x6100 | (len(value) - 10)), (value[10:], 0x9000)]))
    with caplog.at_level(TRAFFIC, logger="card.apdu"):
        assert proto.send(get_data(b"\x5f\xc1\x09"))[0] == value
    assert "00 C0 00 00" in caplog.text and leaks(caplog.text, key) == []


def test_a_chained_put_data_of_the_pin_protected_object_is_hidden_in_every_block(caplog: pytest.LogCaptureFixture) -> None:
    key = os.urandom(300)  # long enough for a chain
    data = b"\x5c\x03\x5f\xc1\x09" + b"\x53\x82\x01\x30" + key
    proto = ApduProtocol(Scripted([(b"", 0x9000), (b"", 0x9000)]))
    with caplog.at_level(TRAFFIC, logger="card.apdu"):
        proto.send(CommandApdu(0, 0xDB, 0x3F, 0xFF, data, le=None))
    assert caplog.text.count("bytes redacted") == 2 and leaks(caplog.text, key) == []


@SETTINGS
@given(obj=st.binary(min_size=1, max_size=3), value=st.binary(min_size=8, max_size=40))
def test_after_verify_only_public_objects_are_traced(obj: bytes, value: bytes) -> None:
    records: list[str] = []
    handler = logging.Handler(TRAFFIC)
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    log = logging.getLogger("card.apdu")
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(TRAFFIC)
    try:
        proto = ApduProtocol(Scripted([(b"", 0x9000), (value, 0x9000)]))
        proto.send(CommandApdu(0, 0x20, 0x00, 0x80, b"123456\xff\xff", le=None))
        proto.send(get_data(obj))
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    reply = records[-1]
    if obj in PUBLIC_OBJECTS:
        assert value.hex(" ").upper() in reply
    else:
        assert reply == f"< <{len(value)} bytes redacted> 9000"
    assert "31 32 33 34 35 36" not in "\n".join(records)


def test_private_key_replies_hide_an_rsa_decipher_and_ecdh_but_show_an_ec_signature(caplog: pytest.LogCaptureFixture) -> None:
    plain = os.urandom(40)
    proto = ApduProtocol(Scripted([(b"\x7c\x2a\x82\x28" + plain, 0x9000)] * 4))
    with caplog.at_level(TRAFFIC, logger="card.apdu"):
        proto.send(CommandApdu(0, 0x87, 0x11, 0x9C, bytes.fromhex("7c2482008120") + bytes(32)))  # EC sign
        shown = caplog.text
        proto.send(CommandApdu(0, 0x87, 0x07, 0x9D, bytes.fromhex("7c820104820081820100") + bytes(256)))  # RSA
        proto.send(CommandApdu(0, 0x87, 0x11, 0x9D, bytes.fromhex("7c4582008541") + bytes(65)))  # ECDH
    assert plain.hex(" ").upper() in shown
    assert caplog.text.count(plain.hex(" ").upper()) == 1
