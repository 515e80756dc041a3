"""Encoding vectors for TLV and APDUs, chaining at 255 bytes, 61XX/6CXX handling, redaction."""

from __future__ import annotations

import pytest

from card import tlv
from card.apdu import ApduProtocol, CommandApdu, redact
from card.errors import BadResponseError


class ScriptedTransport:
    """Answers a fixed script of (expected command hex, response hex); fails on anything else."""

    name = "scripted"

    def __init__(self, script: list[tuple[str, str]]) -> None:
        self.script = [(bytes.fromhex(c), bytes.fromhex(r)) for c, r in script]

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        assert self.script, f"unexpected command {apdu.hex()}"
        expected, response = self.script.pop(0)
        assert apdu == expected, f"sent {apdu.hex()} expected {expected.hex()}"
        return response[:-2], int.from_bytes(response[-2:], "big")

    def transaction(self):  # type: ignore[no-untyped-def]
        import contextlib

        return contextlib.nullcontext()

    def close(self) -> None:
        pass


@pytest.mark.parametrize("length,encoded", [(0, "00"), (0x7F, "7f"), (0x80, "8180"), (0xFF, "81ff"),
                                            (0x100, "820100"), (0xFFFF, "82ffff"), (0x10000, "83010000")])
def test_length_boundaries(length: int, encoded: str) -> None:
    assert tlv.encode_length(length).hex() == encoded
    data = b"\x70" + bytes.fromhex(encoded) + b"\x00" * length
    assert tlv.parse(data) == [(b"\x70", b"\x00" * length)]


def test_multibyte_tag_and_truncation() -> None:
    assert tlv.parse(bytes.fromhex("5fc10201aa")) == [(b"\x5f\xc1\x02", b"\xaa")]
    with pytest.raises(BadResponseError):
        tlv.parse(bytes.fromhex("7082010000"))  # claims 256 bytes, has 2


def test_chaining_splits_at_255_bytes() -> None:
    data = bytes(range(256)) * 2  # 512 bytes → 255 + 255 + 2
    blocks = CommandApdu(0x00, 0xDB, 0x3F, 0xFF, data, le=None).chained()
    assert [b[:5].hex() for b in blocks] == ["10db3fffff", "10db3fffff", "00db3fff02"]
    assert b"".join(b[5:] for b in blocks) == data


def test_get_response_follows_61xx_with_61_00_meaning_256() -> None:
    # F06: 700 bytes answered as 256 + 61 00, 256 + 61 BC, 188 + 90 00.
    script = [
        ("00cb3fff055c035fc10500", "aa" * 256 + "6100"),
        ("00c0000000", "bb" * 256 + "61bc"),
        ("00c00000bc", "cc" * 188 + "9000"),
    ]
    proto = ApduProtocol(ScriptedTransport(script))
    data, sw = proto.send(CommandApdu(0, 0xCB, 0x3F, 0xFF, bytes.fromhex("5c035fc105")))
    assert sw == 0x9000
    assert data == b"\xaa" * 256 + b"\xbb" * 256 + b"\xcc" * 188
    assert proto.apdus_sent == 3


def test_wrong_le_is_resent_with_the_cards_le() -> None:
    script = [("00cb3fff055c035fc10700", "6c10"), ("00cb3fff055c035fc10710", "11" * 16 + "9000")]
    data, sw = ApduProtocol(ScriptedTransport(script)).send(CommandApdu(0, 0xCB, 0x3F, 0xFF, bytes.fromhex("5c035fc107")))
    assert (data, sw) == (b"\x11" * 16, 0x9000)


def test_endless_61xx_is_cut_off() -> None:
    class Endless(ScriptedTransport):
        def transmit(self, apdu: bytes) -> tuple[bytes, int]:
            return b"\x00" * 256, 0x6100

    with pytest.raises(BadResponseError):
        ApduProtocol(Endless([])).send(CommandApdu(0, 0xCB, 0x3F, 0xFF, b"\x5c\x01\x7e"))


def test_secrets_are_redacted_in_the_trace() -> None:
    verify = CommandApdu(0, 0x20, 0x00, 0x80, b"123456\xff\xff", le=None).encode()
    assert "313233343536" not in redact(verify).replace(" ", "")
    mgmt = CommandApdu(0, 0x87, 0x03, 0x9B, bytes.fromhex("7c0a8008") + b"\x42" * 8).encode()
    assert "4242" not in redact(mgmt).replace(" ", "")
    get = CommandApdu(0, 0xCB, 0x3F, 0xFF, bytes.fromhex("5c035fc105")).encode()
    assert redact(get) == "00 CB 3F FF 05 5C 03 5F C1 05 00"
