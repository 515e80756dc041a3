"""The secret-leak check itself (tests/leaks.py): it must find a PIN the way a trace would show it,
and must not take a certificate's ASCII time for the PIN (CI failed on ``32 33 34 35`` at 23:45)."""

from __future__ import annotations

from tests.leaks import leaks

PIN = b"123456"


def test_a_verify_apdu_in_the_trace_shows_the_pin() -> None:
    trace = b"TRAFFIC > 00 20 00 80 08 31 32 33 34 35 36 FF FF\n"
    assert leaks(trace, PIN) == ["31 32 33 34 35 36"]


def test_the_pin_in_clear_or_as_joined_hex_is_found() -> None:
    assert leaks(b"pin = '123456'", PIN) == ["123456"]
    assert leaks(b"data=313233343536ffff", PIN) == ["31 32 33 34 35 36"]


def test_a_certificates_utc_time_is_not_the_pin() -> None:
    # notBefore 2026-12-03 23:45:12 UTC as DER UTCTime: 17 0D "261203234512Z"
    trace = b"TRAFFIC < 17 0D 32 36 31 32 30 33 32 33 34 35 31 32 5A\n"
    assert leaks(trace, PIN) == []


def test_a_binary_key_is_found_by_any_four_byte_run() -> None:
    key = bytes(range(0xA0, 0xB8))
    assert leaks(b"GET DATA < 88 1A " + key[3:7].hex(" ").encode() + b"\n", key) == [key[3:7].hex(" ")]
