"""PivSession against the software card: PIN counters, PIN-always on 9C, management key, objects."""

from __future__ import annotations

import pytest

from card.certificates import encode_certificate_object
from card.errors import ApduError, InvalidPinError, ManagementKeyError, PinBlockedError, PinFormatError
from card.piv import DEFAULT_MANAGEMENT_KEY, ManagementKeyAlgorithm, PivSession, Slot, encode_pin
from card.secret import Secret


def test_wrong_pin_counts_down_then_blocks(make_card) -> None:  # type: ignore[no-untyped-def]
    card = make_card()
    s = PivSession(card)
    s.select()
    assert s.get_pin_retries() == 3
    with pytest.raises(InvalidPinError) as first:
        s.verify_pin(Secret("000000"))
    assert first.value.attempts_remaining == 2
    assert "2 tries left" in str(first.value)
    with pytest.raises(InvalidPinError) as second:
        s.verify_pin(Secret("000000"))
    assert second.value.attempts_remaining == 1
    with pytest.raises(PinBlockedError):
        s.verify_pin(Secret("000000"))
    with pytest.raises(PinBlockedError):
        s.verify_pin(Secret("123456"))  # right PIN, but blocked
    assert card.state.pin_retries == 0


def test_right_pin_resets_the_counter(make_card) -> None:  # type: ignore[no-untyped-def]
    card = make_card()
    s = PivSession(card)
    s.select()
    with pytest.raises(InvalidPinError):
        s.verify_pin(Secret("000000"))
    s.verify_pin(Secret("123456"))
    assert s.get_pin_retries() is None  # verified
    assert card.state.pin_retries == 3


@pytest.mark.parametrize("pin", ["12345", "1234567890", "ééééé"])
def test_pin_format_is_checked_before_any_apdu(make_card, pin: str) -> None:  # type: ignore[no-untyped-def]
    card = make_card()
    s = PivSession(card)
    before = card.apdu_count
    with pytest.raises(PinFormatError):
        s.verify_pin(Secret(pin))
    assert card.apdu_count == before
    assert card.state.pin_retries == 3


def test_pin_padding() -> None:
    assert encode_pin(Secret("123456")).hex() == "313233343536ffff"
    assert encode_pin(Secret("12345678")).hex() == "3132333435363738"


def test_pin_always_slot_needs_verify_immediately_before(make_card) -> None:  # type: ignore[no-untyped-def]
    # F08: VERIFY, then any other command, then the 9C signature → 69 82.
    card = make_card()
    s = PivSession(card)
    s.select()
    s.verify_pin(Secret("123456"))
    s.get_data(Slot.SIGNATURE.object_id)
    from card.piv import KeyType

    with pytest.raises(ApduError) as exc:
        s.sign(Slot.SIGNATURE, KeyType.RSA2048, b"message")
    assert exc.value.sw == 0x6982
    s.verify_pin(Secret("123456"))
    assert len(s.sign(Slot.SIGNATURE, KeyType.RSA2048, b"message")) == 256
    s.get_data(Slot.SIGNATURE.object_id)
    assert len(s.sign(Slot.AUTHENTICATION, KeyType.RSA2048, b"m")) == 256  # 9A: PIN once


def test_wrong_management_key_and_wrong_algorithm(make_card) -> None:  # type: ignore[no-untyped-def]
    card = make_card()
    s = PivSession(card)
    s.select()
    with pytest.raises(ManagementKeyError):
        s.authenticate(Secret(bytes(24)))
    with pytest.raises(ManagementKeyError):  # F14: AES-192 asked of a 3DES card → 6A80
        s.authenticate(Secret(DEFAULT_MANAGEMENT_KEY), ManagementKeyAlgorithm.AES192)
    s.authenticate(Secret(DEFAULT_MANAGEMENT_KEY))


def test_put_data_needs_management_key_and_respects_capacity(make_card) -> None:  # type: ignore[no-untyped-def]
    card = make_card()
    s = PivSession(card)
    s.select()
    with pytest.raises(ApduError) as exc:
        s.put_data(b"\x5f\xc1\x0b", encode_certificate_object(b"x" * 100))
    assert exc.value.sw == 0x6982
    s.authenticate(Secret(DEFAULT_MANAGEMENT_KEY))
    with pytest.raises(ApduError) as exc:
        s.put_data(b"\x5f\xc1\x0b", encode_certificate_object(b"x" * 4000))
    assert exc.value.sw == 0x6A84


def test_broken_slots_are_reported_per_slot(make_card) -> None:  # type: ignore[no-untyped-def]
    # F15: junk in 9A must not hide a good 9C.
    card = make_card()
    card.state.objects["5FC105"] = "700468656A0A710100"
    s = PivSession(card)
    s.select()
    bad = s.read_certificate(Slot.AUTHENTICATION)
    good = s.read_certificate(Slot.SIGNATURE)
    assert bad.certificate is None and bad.error and "unreadable object" in bad.error
    assert good.certificate is not None and good.error is None


def test_gzip_compressed_certificate_is_read(make_card) -> None:  # type: ignore[no-untyped-def]
    # F01/F02: CertInfo 01 or 80 means gzip.
    card = make_card()
    s = PivSession(card)
    s.select()
    cert = s.read_certificate(Slot.AUTHENTICATION).certificate
    from cryptography.hazmat.primitives.serialization import Encoding

    obj = encode_certificate_object(cert.public_bytes(Encoding.DER), compress=True)
    card.state.objects["5FC105"] = obj.hex()
    assert s.read_certificate(Slot.AUTHENTICATION).certificate == cert
    card.state.objects["5FC105"] = obj.replace(b"\x71\x01\x01", b"\x71\x01\x80").hex()
    assert s.read_certificate(Slot.AUTHENTICATION).certificate == cert


def test_fault_injection_at_a_named_step_and_reinsertion(make_card) -> None:  # type: ignore[no-untyped-def]
    from card.emulator.card import CardFaults
    from card.errors import CardRemovedError
    from card.piv import KeyType

    card = make_card(faults=CardFaults(drop_at={"generate": 1}))
    s = PivSession(card)
    s.select()
    s.authenticate(Secret(DEFAULT_MANAGEMENT_KEY))
    before = card.state.keys["9A"].private_pem
    with pytest.raises(CardRemovedError):
        s.generate_key(Slot.AUTHENTICATION, KeyType.RSA2048)
    assert card.state.keys["9A"].private_pem == before  # pulled before the command was applied
    with pytest.raises(CardRemovedError):
        s.select()
    card.insert()
    s.select()
    assert s.get_pin_retries() == 3
    with pytest.raises(ValueError):
        CardFaults(drop_at={"lunch": 1})


def test_change_pin_sends_both_blocks_and_counts_wrong_tries(make_card) -> None:  # type: ignore[no-untyped-def]
    card = make_card()
    s = PivSession(card)
    s.select()
    with pytest.raises(InvalidPinError) as wrong:
        s.change_pin(Secret("000000"), Secret("654321"))
    assert wrong.value.attempts_remaining == 2
    with pytest.raises(PinFormatError):
        s.change_pin(Secret("123456"), Secret("12"))  # no APDU, no try used
    assert card.state.pin_retries == 2
    s.change_pin(Secret("123456"), Secret("654321"))
    assert card.state.pin == "654321" and card.state.pin_retries == 3
    s.verify_pin(Secret("654321"))
    for _ in range(3):
        with pytest.raises((InvalidPinError, PinBlockedError)):
            s.change_pin(Secret("000000"), Secret("111111"))
    with pytest.raises(PinBlockedError):
        s.change_pin(Secret("654321"), Secret("111111"))


def test_change_pin_apdu_bytes() -> None:
    sent: list[bytes] = []

    class Recorder:
        def transmit(self, apdu: bytes) -> tuple[bytes, int]:
            sent.append(bytes(apdu))
            return b"", 0x9000

    s = PivSession(Recorder())  # type: ignore[arg-type]
    s.change_pin(Secret("123456"), Secret("87654321"))
    assert sent[-1] == bytes.fromhex("00240080 10") + b"123456\xff\xff" + b"87654321"
    s.reset_retry(Secret("12345678"), Secret("123456"))
    assert sent[-1] == bytes.fromhex("002C0080 10") + b"12345678" + b"123456\xff\xff"


def test_reset_retry_unblocks_with_the_puk(make_card) -> None:  # type: ignore[no-untyped-def]
    card = make_card()
    card.state.pin_retries = 0
    s = PivSession(card)
    s.select()
    with pytest.raises(InvalidPinError) as wrong:
        s.reset_retry(Secret("00000000"), Secret("654321"))
    assert wrong.value.attempts_remaining == 2
    s.reset_retry(Secret(card.state.puk), Secret("654321"))
    assert card.state.pin_retries == 3 and card.state.puk_retries == 3
    s.verify_pin(Secret("654321"))
    card.state.puk_retries = 0
    with pytest.raises(PinBlockedError):
        s.reset_retry(Secret("12345678"), Secret("123456"))
