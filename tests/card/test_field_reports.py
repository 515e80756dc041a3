"""Field reports (``shared/cases/field-reports.md``) as tests, on the in-process card and hex vectors.

Each test names its report. Reports covered elsewhere: F01/F02 (``test_piv_emulator``: CertInfo 01/80),
F06 (``test_apdu_tlv``: 61 00 = 256, endless 61XX cut off), F07 (``test_cli_config``), F08
(``test_piv_emulator``), F14 (``test_profiles_mgmt_keys``), F15 (``test_renewal``, ``test_piv_emulator``),
F04/F16 through pcscd + OpenSC (``tests/integration/test_field_reports_pcscd.py``).
"""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pytest
from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import NameOID

from card import pcsc
from card.apdu import ApduProtocol, CommandApdu
from card.certificates import decode_certificate_object, encode_certificate_object, fit_certificate_object
from card.config import Settings
from card.csr import CsrError, build_csr
from card.emulator.card import CardFaults, SoftPivCard, state_digest
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA
from card.errors import (
    ApduError,
    CertificateTooLargeError,
    ReaderUnavailableError,
)
from card.journal import AuditLog, JournalStore
from card.piv import DEFAULT_MANAGEMENT_KEY, KeyType, PivSession, Slot, retries_from_sw
from card.renewal import RenewalContext, read_card, renew
from card.secret import Secret

PIN = "123456"


def ctx_for(tmp_path: Path, ca: LocalCA, **settings: object) -> RenewalContext:
    s = Settings(state_dir=tmp_path / "state", **settings)  # type: ignore[arg-type]
    return RenewalContext(s, ca, JournalStore(s.state_dir), AuditLog(s.state_dir / "audit.log"))


def certificate_of_size(size: int, key_type: KeyType = KeyType.RSA2048) -> bytes:
    """A DER certificate of exactly ``size`` bytes (padding in a private, non-critical extension)."""
    key = rsa.generate_private_key(65537, 2048) if key_type is KeyType.RSA2048 else ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Size Test")])
    pad = 16
    for _ in range(6):
        now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        der = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x00" * pad), False)
               .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
        if len(der) == size:
            return der
        pad += size - len(der)
    raise AssertionError(f"could not make a {size}-byte certificate")


# -- F04: objects larger than 2 KB through GET RESPONSE chains --------------------------------------
@pytest.mark.parametrize("size", [1024, 2048, 2068, 3052, 3584])
def test_f04_large_certificates_arrive_whole_through_get_response(ca: LocalCA, size: int) -> None:
    der = certificate_of_size(size)
    state = create_card_state(ca)
    state.objects[Slot.AUTHENTICATION.object_id.hex().upper()] = encode_certificate_object(der).hex()
    card = SoftPivCard(state)
    s = PivSession(card)
    s.select()
    got = s.read_certificate(Slot.AUTHENTICATION)
    assert got.error is None and got.certificate is not None
    assert got.certificate.public_bytes(serialization.Encoding.DER) == der
    get_responses = [(a, sw) for a, sw in card.trace if a[1] == 0xC0]
    object_len = len(encode_certificate_object(der)) + 4  # 53 82 LL LL
    assert len(get_responses) == (object_len - 1) // 256  # one GET RESPONSE per further 256-byte chunk
    assert all(len(a) == 5 for a, _ in get_responses)


# -- F05: the card cannot store the certificate -------------------------------------------------
def test_f05_size_is_checked_before_writing_and_compression_is_the_fallback() -> None:
    der = certificate_of_size(1500)
    assert decode_certificate_object(fit_certificate_object(der, 3052)) is not None
    assert fit_certificate_object(der, 3052)[-5:] == bytes.fromhex("710100FE00")  # uncompressed when it fits
    packed = fit_certificate_object(der, 1400)  # does not fit plain, fits gzipped (padding compresses)
    assert packed[-5:] == bytes.fromhex("710101FE00")
    assert decode_certificate_object(packed).public_bytes(serialization.Encoding.DER) == der  # type: ignore[union-attr]
    with pytest.raises(CertificateTooLargeError, match="certificate too large for this card: 1500 bytes"):
        fit_certificate_object(der, len(gzip.compress(der, mtime=0)) - 1)


def test_f05_card_answers_6a84_on_a_chained_put_data_and_keeps_the_old_object(ca: LocalCA) -> None:
    state = create_card_state(ca)
    state.max_object_bytes = 1024
    card = SoftPivCard(state)
    before = dict(state.objects)
    s = PivSession(card)
    s.select()
    s.authenticate(Secret(DEFAULT_MANAGEMENT_KEY))
    with pytest.raises(ApduError) as exc:
        s.put_certificate(Slot.AUTHENTICATION, certificate_of_size(1536))
    assert exc.value.sw == 0x6A84
    chained = [a for a, _ in card.trace if a[1] == 0xDB]
    assert len(chained) == 7 and all(a[0] == 0x10 for a in chained[:-1])  # 255-byte blocks, CLA 10 but the last
    assert state.objects == before


def test_f05_engine_says_too_large_when_the_card_is_smaller_than_configured(ca: LocalCA, tmp_path: Path) -> None:
    state = create_card_state(ca)
    state.max_object_bytes = 600  # the CA's certificates are ~0.8-1 KB; configuration says 3052
    card = SoftPivCard(state)
    result = renew(PivSession(card), ctx_for(tmp_path, ca), Secret(PIN))
    assert not result.ok
    errors = [s.error for s in result.slots if s.error]
    assert errors and isinstance(errors[0], CertificateTooLargeError)
    assert "certificate too large for this card" in str(errors[0]) and "6A84" in str(errors[0])
    assert result.slots[0].slot is Slot.AUTHENTICATION and result.slots[0].new_certificate is None


def test_f05_engine_checks_the_configured_capacity_before_writing(ca: LocalCA, tmp_path: Path) -> None:
    card = SoftPivCard(create_card_state(ca, key_type=KeyType.ECCP256))
    # ECC certificates from the CA are ~700 bytes; configuration says the card stores 600 → preflight refuses
    with pytest.raises(Exception, match="may not fit the card"):
        renew(PivSession(card), ctx_for(tmp_path, ca, max_certificate_bytes=600), Secret(PIN))
    assert not [a for a, _ in card.trace if a[1] in (0x47, 0xDB)]  # nothing generated, nothing written


# -- F06: 61 00 from our card ------------------------------------------------------------------
def test_f06_card_sends_61_00_then_the_rest_and_the_client_reassembles(ca: LocalCA) -> None:
    state = create_card_state(ca)
    state.objects["5FC102"] = ("AB" * 696)  # a 700-byte answer: 53 82 02 B8 + 696
    card = SoftPivCard(state)
    proto = ApduProtocol(card)
    data, sw = proto.send(CommandApdu(0, 0xCB, 0x3F, 0xFF, bytes.fromhex("5c035fc102")))
    assert sw == 0x9000 and len(data) == 700
    assert [sw for _, sw in card.trace] == [0x6100, 0x61BC, 0x9000]  # 256 + 61 00 (256 or more), 256 + 61 BC, 188
    assert [a.hex() for a, _ in card.trace][1:] == ["00c0000000", "00c00000bc"]


# -- F10: 69 82 while signing is a PIN message, not a crypto-library error -----------------------
def test_f10_signature_without_pin_is_a_pin_message(ca: LocalCA) -> None:
    card = SoftPivCard(create_card_state(ca))
    s = PivSession(card)
    s.select()
    with pytest.raises(ApduError, match="PIN not verified") as exc:
        s.sign(Slot.AUTHENTICATION, KeyType.RSA2048, b"hello")
    assert exc.value.sw == 0x6982


# -- F11: DER ECDSA with r/s of 31, 32 and 33 bytes goes into the CSR unchanged -----------------------
def _der_int_len(value: int) -> int:
    return (value.bit_length() + 8) // 8  # DER adds a 00 byte when the top bit is set


@pytest.mark.parametrize("r_len,s_len", [(31, 32), (32, 33), (33, 31), (33, 33), (32, 32)])
def test_f11_ecdsa_der_with_31_32_33_byte_integers(r_len: int, s_len: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "F11")])
    seen: dict[str, bytes] = {}

    def sign(message: bytes) -> bytes:
        for _ in range(20000):  # ECDSA is randomised: sign until r and s have the wanted DER lengths
            sig = key.sign(message, ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(sig)
            if _der_int_len(r) == r_len and _der_int_len(s) == s_len:
                seen["sig"] = sig
                return sig
        pytest.skip("no signature with these lengths found")

    csr = build_csr(subject, key.public_key(), sign)
    assert csr.is_signature_valid
    assert asn1_csr.CertificationRequest.load(csr.public_bytes(serialization.Encoding.DER))["signature"].native == seen["sig"]
    assert seen["sig"][3] == r_len  # 30 LL 02 <r_len>


def test_f11_raw_r_s_from_a_pkcs11_layer_is_refused_before_the_ca_sees_it() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "F11 raw")])

    def raw_sign(message: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(48, "big") + s.to_bytes(48, "big")  # 96-byte r‖s, the report's input

    with pytest.raises((CsrError, ValueError)):
        build_csr(subject, key.public_key(), raw_sign)
    assert encode_dss_signature(1, 1)  # sanity: the DER form is what the CSR wants


# -- F12: a certificate for another key is never written (covered by test_renewal) ----------------
# -- F13: GENERATE refused → "cannot generate", nothing destroyed -------------------------------
def test_f13_generate_6a80_says_cannot_generate_and_nothing_is_destroyed(ca: LocalCA, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A card that does not list its algorithms is found out at GENERATE (6A80), still before harm."""
    import card.token.piv  # SELECT's algorithm list is the PIV token's answer (issue 14)

    monkeypatch.setattr(card.token.piv, "parse_supported_key_types", lambda apt: None)
    card = SoftPivCard(create_card_state(ca, profile="legacy"))  # RSA-2048 only
    before = {k: v.private_pem for k, v in card.state.keys.items()}, dict(card.state.objects)
    from card.errors import NotSupportedError

    with pytest.raises(NotSupportedError) as exc:  # exit 11, the journal ended (issue 11 item 2)
        renew(PivSession(card), ctx_for(tmp_path, ca, key_type=KeyType.ECCP256), Secret(PIN))
    message = str(exc.value)
    assert "cannot generate ECCP256" in message and "nothing was changed" in message
    assert ({k: v.private_pem for k, v in card.state.keys.items()}, dict(card.state.objects)) == before
    generate = [(a, sw) for a, sw in card.trace if a[1] == 0x47]
    assert [sw for _, sw in generate] == [0x6A80]


def test_f13_rsa_4096_and_3072_are_refused_by_the_card() -> None:
    state = create_card_state.__globals__["profile_state"]("piv")
    card = SoftPivCard(state)
    s = PivSession(card)
    s.select()
    s.authenticate(Secret(DEFAULT_MANAGEMENT_KEY))
    for alg in ("16", "05"):
        resp = card.process_apdu(bytes.fromhex(f"0047009A05AC038001{alg}00"))
        assert resp[-2:] == b"\x6a\x80"


# -- F18 (part): a 63 0X answer (old NEO) still counts tries ------------------------------------------
def test_f07_f18_retry_encodings() -> None:
    assert retries_from_sw(0x63C2) == 2 and retries_from_sw(0x6302) == 2 and retries_from_sw(0x6300) == 0


# -- F20: polkit refusing the session ------------------------------------------------------------
@pytest.mark.parametrize("code_name", ["SCARD_E_NO_ACCESS", "SCARD_W_SECURITY_VIOLATION"])
def test_f20_polkit_refusal_is_explained(monkeypatch: pytest.MonkeyPatch, code_name: str) -> None:
    scard = pcsc._scard
    assert scard is not None
    code = getattr(scard, code_name)
    monkeypatch.setattr(scard, "SCardEstablishContext", lambda scope: (code, 0))
    with pytest.raises(ReaderUnavailableError) as exc:
        pcsc.list_readers()
    assert code_name in str(exc.value) and "pcscd refused this session" in str(exc.value)
    assert "polkit rule granting access_pcsc and access_card" in (exc.value.next_step or "")


# -- F24: slow cards: only the configured slots are read, retired slots never -------------------------
def test_f24_status_reads_few_objects_on_a_slow_card(ca: LocalCA, tmp_path: Path) -> None:
    card = SoftPivCard(create_card_state(ca), faults=CardFaults(delays_s={0xCB: 0.15, 0x20: 0.9}))
    summary = read_card(PivSession(card), Settings(state_dir=tmp_path / "state"), now=dt.datetime.now(dt.timezone.utc))
    assert [s.slot for s in summary.slots] == [Slot.AUTHENTICATION, Slot.SIGNATURE]
    objects = [a[7:10].hex().upper() for a, _ in card.trace if a[1] == 0xCB and a[5] == 0x5C and a[6] == 3]
    assert not any("5FC10D" <= o <= "5FC120" for o in objects)  # no retired slot is polled
    slow = [a for a, _ in card.trace if a[1] in (0xCB, 0x20)]
    assert len(slow) <= 5, [a.hex() for a in slow]  # CHUID, 9A, 9C, one empty VERIFY: < 2 s on this card
    assert state_digest(card.state)


def test_f13_a_configured_key_type_change_signs_the_ca_nonce_with_the_old_key(ca: LocalCA, tmp_path: Path) -> None:
    """Found while writing F13: with key_type = ECCP256 configured, the CA's nonce was signed with P1 = 11
    by the old RSA key (6A80) and no renewal could change the key type."""
    card = SoftPivCard(create_card_state(ca))  # RSA-2048 keys
    result = renew(PivSession(card), ctx_for(tmp_path, ca, key_type=KeyType.ECCP256), Secret(PIN))
    assert result.ok, result
    for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
        assert card.state.keys[slot.hex].key_type == KeyType.ECCP256
        cert = PivSession(card).read_certificate(slot).certificate
        assert cert is not None and isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


# -- F03: a compressed object over 61 00 chunks next to a junk slot: one decoder, per-slot errors -----
def test_f03_compressed_object_over_get_response_and_a_bad_slot_do_not_stop_the_others(ca: LocalCA, tmp_path: Path) -> None:
    from card.renewal import SlotState

    state = create_card_state(ca)
    padded = certificate_of_size(1300)  # a 1.3 KB DER, as the report
    state.objects["5FC105"] = encode_certificate_object(padded, compress=True).hex()
    assert bytes.fromhex(state.objects["5FC105"])[4:6] == b"\x1f\x8b"  # 70 82 LL LL 1F 8B
    state.objects["5FC10A"] = "700468656A0A710100"  # junk in 9C
    card = SoftPivCard(state)
    summary = read_card(PivSession(card), Settings(state_dir=tmp_path / "state"), now=dt.datetime.now(dt.timezone.utc))
    by = {s.slot: s for s in summary.slots}
    assert by[Slot.AUTHENTICATION].certificate is not None
    assert by[Slot.AUTHENTICATION].certificate.public_bytes(serialization.Encoding.DER) == padded
    assert by[Slot.SIGNATURE].state is SlotState.UNREADABLE and by[Slot.SIGNATURE].error


# -- F19: another program holds the card exclusively ------------------------------------------------
def test_f19_sharing_violation_names_the_usual_culprits(monkeypatch: pytest.MonkeyPatch) -> None:
    scard = pcsc._scard
    assert scard is not None
    monkeypatch.setattr(scard, "SCardEstablishContext", lambda scope: (scard.SCARD_S_SUCCESS, 1))
    monkeypatch.setattr(scard, "SCardReleaseContext", lambda ctx: scard.SCARD_S_SUCCESS)
    monkeypatch.setattr(scard, "SCardConnect", lambda *a: (scard.SCARD_E_SHARING_VIOLATION, 0, 0))
    with pytest.raises(ReaderUnavailableError) as exc:
        pcsc.PcscTransport("Virtual PCD 00 00")
    assert "SCARD_E_SHARING_VIOLATION" in str(exc.value) and "scdaemon" in (exc.value.next_step or "")


def test_f17_insufficient_buffer_is_reported_as_our_bug_not_the_cards() -> None:
    """F17: pcsc-lite rejects a receive buffer above 65548 bytes with SCARD_E_INSUFFICIENT_BUFFER."""
    from card import pcsc
    from card.errors import CardRemovedError, ReaderUnavailableError

    error = pcsc._fail("sending a command to the card", pcsc._scard.SCARD_E_INSUFFICIENT_BUFFER)
    assert not isinstance(error, (CardRemovedError, ReaderUnavailableError))
    assert "bug in cardrenew, not a card problem" in str(error)


def test_f13_card_algorithm_list_is_checked_before_the_ca_is_asked(ca, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """F13: a key type the card does not list in its APT is refused before authorisation."""
    import dataclasses

    from card.config import Settings
    from card.emulator.card import SoftPivCard
    from card.emulator.create import create_card_state
    from card.errors import NotSupportedError
    from card.journal import AuditLog, JournalStore
    from card.piv import KeyType, PivSession
    from card.renewal import RenewalContext, renew

    card = SoftPivCard(create_card_state(ca, key_type=KeyType.RSA2048))
    card.state.supported_key_types = [0x07]  # RSA-2048 only, like the legacy profile
    settings = dataclasses.replace(Settings(), key_type=KeyType.ECCP256)
    context = RenewalContext(settings, ca, JournalStore(tmp_path), AuditLog(tmp_path / "audit.log"))
    before = {k: v.private_pem for k, v in card.state.keys.items()}
    with pytest.raises(NotSupportedError) as exc:
        renew(PivSession(card), context, Secret("123456"))
    assert "cannot generate ECCP256" in str(exc.value) and "RSA2048" in str(exc.value)
    assert "nothing was changed" in str(exc.value)
    assert {k: v.private_pem for k, v in card.state.keys.items()} == before
    assert not list(tmp_path.glob("journal-*.json"))
