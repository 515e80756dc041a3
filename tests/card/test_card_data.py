"""Card data a card can get wrong (issue 11 items 6 and 8): each parser of card data either parses
or raises the project's documented error, and one bad slot never hides the other.

The fuzz tests of the same parsers are in ``test_parsers_fuzz.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import warnings
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from card import tlv
from card.apdu import MAX_GET_RESPONSE_ROUNDS, MAX_RESPONSE_BYTES, ApduProtocol, CommandApdu
from card.certificates import (
    NonPositiveSerialCertificate,
    decode_certificate_object,
    encode_certificate_object,
    fingerprint,
    load_certificate,
    load_certificate_pem,
)
from card.config import Settings
from card.emulator.card import SoftPivCard
from card.enrollment.local import LocalCA, init_ca
from card.errors import BadResponseError, CardError, CertificateObjectError
from card.journal import AuditLog, JournalStore
from card.piv import KeyType, PivSession, Slot, parse_public_key
from card.renewal import RenewalContext, SlotState, read_card, renew
from card.secret import Secret

PIN = "123456"
DER = serialization.Encoding.DER


def der_of(card: SoftPivCard, slot: Slot) -> bytes:
    cert = PivSession(card).read_certificate(slot).certificate
    assert cert is not None
    return cert.public_bytes(DER)


def corrupt_subject(der: bytes) -> bytes:
    """One byte changed inside the subject: the CN's string tag becomes 00 (not a string type)."""
    parsed = asn1_x509.Certificate.load(der)
    cn = parsed["tbs_certificate"]["subject"].chosen[-1][0]["value"].chosen  # CN=Alex Example
    at = der.index(cn.dump())
    return der[:at] + b"\x00" + der[at + 1:]


def resigned(der: bytes, ca: LocalCA, serial: int) -> bytes:
    """``der`` with another serial number, signed again by ``ca`` (ECDSA P-384, SHA-384)."""
    parsed = asn1_x509.Certificate.load(der)
    tbs = parsed["tbs_certificate"].copy()
    tbs["serial_number"] = serial
    signature = ca.key.sign(tbs.dump(), ec.ECDSA(hashes.SHA384()))  # type: ignore[call-arg]
    return asn1_x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": parsed["signature_algorithm"],
                                  "signature_value": signature}).dump()


def use_card_for_cli(monkeypatch: pytest.MonkeyPatch, card: SoftPivCard) -> None:
    """``cardrenew status`` / ``renew`` run on the in-process card instead of a PC/SC reader."""
    import card.backend as backend_module
    from card.backend import Backend
    from card.service import CardService

    def backend(settings, reader=None, *, with_issuer=True, wait_for_card=False, cancel=None):  # type: ignore[no-untyped-def]
        return Backend(settings, CardService(lambda: card, lambda: True), None,  # type: ignore[arg-type]
                       JournalStore(settings.state_dir), AuditLog(settings.state_dir / "audit.log"), "In-process card")

    monkeypatch.setattr(backend_module, "pcsc_backend", backend)


def status_json(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    from tui.cli import main

    code = main(["status", "--json"])
    return code, json.loads(capsys.readouterr().out)


def context(tmp_path: Path, ca: LocalCA) -> RenewalContext:
    settings = Settings(state_dir=tmp_path / "state")
    return RenewalContext(settings, ca, JournalStore(settings.state_dir), AuditLog(settings.state_dir / "audit.log"))


# -- issue 11 item 6: one corrupted byte in a subject ------------------------------------------------
def test_a_corrupted_subject_makes_that_slot_unreadable_and_status_exits_11(make_card, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Was: `cardrenew status` exit 1 with {"code": "INTERNAL"} (cryptography decodes names lazily)."""
    card = make_card(key_type=KeyType.ECCP256)
    card.state.objects["5FC105"] = encode_certificate_object(corrupt_subject(der_of(card, Slot.AUTHENTICATION))).hex()
    use_card_for_cli(monkeypatch, card)
    code, out = status_json(capsys)
    assert code == out["exit_code"] == 11
    by_slot = {s["slot"]: s for s in out["slots"]}
    assert by_slot["9A"]["state"] == "unreadable"
    assert "subject name does not decode" in by_slot["9A"]["error"] and "unreadable object" in by_slot["9A"]["error"]
    assert by_slot["9C"]["state"] == "due" and by_slot["9C"]["subject"].endswith("CN=Alex Example")
    assert out["holder"] == "Alex Example"  # from the slot that still works
    from tui.cli import main

    assert main(["status"]) == 11
    text = capsys.readouterr().out
    assert "PIV Authentication (9A): unreadable — unreadable object" in text
    assert "Digital Signature (9C): due for renewal" in text


def test_a_corrupted_subject_slot_is_renewed_only_by_the_ra_the_other_is_renewed(make_card, ca, tmp_path) -> None:  # type: ignore[no-untyped-def]
    card = make_card(key_type=KeyType.ECCP256)
    card.state.objects["5FC105"] = encode_certificate_object(corrupt_subject(der_of(card, Slot.AUTHENTICATION))).hex()
    result = renew(PivSession(card), context(tmp_path, ca), Secret(PIN))
    by_slot = {r.slot: r for r in result.slots}
    assert by_slot[Slot.SIGNATURE].renewed
    assert not by_slot[Slot.AUTHENTICATION].renewed and "subject name does not decode" in str(by_slot[Slot.AUTHENTICATION].error)


def test_every_field_the_app_reads_is_decoded_when_the_slot_is_read(make_card) -> None:  # type: ignore[no-untyped-def]
    """Names, validity, extensions and the public key are decoded up front: a certificate the card
    layer hands out never raises later (in the Card tab, the JSON, the engine)."""
    card = make_card(key_type=KeyType.ECCP256)
    der = der_of(card, Slot.AUTHENTICATION)
    parsed = asn1_x509.Certificate.load(der)
    tbs = parsed["tbs_certificate"]
    broken = {
        "issuer name": tbs["issuer"].chosen[-1][0]["value"].chosen.dump(),
        "an extension": tbs["extensions"][0]["extn_value"].dump(),
    }
    for what, part in broken.items():
        at = der.index(part)
        # the first content byte of the issuer's CN string / of the extension's OCTET STRING payload
        # (a SEQUENCE or BOOLEAN inside) becomes a tag the field cannot take
        pos = at + (0 if what == "issuer name" else 2)
        bad = der[:pos] + b"\x00" + der[pos + 1:]
        with pytest.raises(CertificateObjectError, match=f"{what} does not decode"):
            load_certificate(bad)


# -- issue 11 item 8: negative serial numbers ---------------------------------------------------------
@pytest.fixture(params=["cryptography warns", "cryptography refuses"])
def serial_policy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Today's cryptography warns about a negative serial; a later one may refuse it. The second
    case makes every ``x509.load_*_x509_certificate`` refuse such certificates, as that one would."""
    if request.param == "cryptography refuses":
        for name in ("load_der_x509_certificate", "load_pem_x509_certificate"):
            original = getattr(x509, name)

            def strict(data: bytes, *args: object, _original=original) -> x509.Certificate:  # type: ignore[no-untyped-def]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cert = _original(data, *args)
                if cert.serial_number <= 0:
                    raise ValueError("error parsing asn1 value: negative serial number")
                return cert

            monkeypatch.setattr(x509, name, strict)
    return request.param


@pytest.mark.parametrize("serial", [-0x3039, 0])
def test_a_negative_serial_is_shown_with_a_note_and_renewed(make_card, ca, tmp_path, monkeypatch, capsys,  # type: ignore[no-untyped-def]
                                                            serial_policy, serial) -> None:
    """Was: refused as "unreadable" (exit 11). OpenSC and OpenSSL read such certificates; renewing is
    the remedy, so the slot is due like any other and the old-key proof to the CA works."""
    card = make_card(key_type=KeyType.ECCP256)
    old_der = resigned(der_of(card, Slot.AUTHENTICATION), ca, serial)
    card.state.objects["5FC105"] = encode_certificate_object(old_der).hex()

    use_card_for_cli(monkeypatch, card)
    code, out = status_json(capsys)
    assert code == out["exit_code"] == 10  # due, not refused
    nine_a = {s["slot"]: s for s in out["slots"]}["9A"]
    assert nine_a["state"] == "due" and nine_a["error"] is None
    assert nine_a["serial"] == f"{serial:X}"  # "-3039": as OpenSSL, with the sign
    assert "serial number" in nine_a["note"] and "renewing it replaces it" in nine_a["note"]
    assert nine_a["sha256"] == hashlib.sha256(old_der).hexdigest()  # the card's own bytes
    assert {s["slot"]: s for s in out["slots"]}["9C"]["note"] is None

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation warning escapes to the user
        result = renew(PivSession(card), context(tmp_path, ca), Secret(PIN))
    assert result.ok, result.error or [str(s.error) for s in result.slots]
    renewed = {r.slot: r for r in result.slots}
    assert renewed[Slot.AUTHENTICATION].old_certificate.serial_number == serial
    new = renewed[Slot.AUTHENTICATION].new_certificate
    assert new.serial_number > 0 and new.public_bytes(DER) == der_of(card, Slot.AUTHENTICATION)
    after = read_card(PivSession(card), Settings(state_dir=tmp_path / "state"))
    assert all(s.state is SlotState.OK and s.note is None for s in after.slots)


def test_a_renewal_stopped_after_generate_resumes_from_the_journalled_negative_serial_certificate(
        make_card, ca, tmp_path, serial_policy) -> None:  # type: ignore[no-untyped-def]
    """The journal keeps the old certificate as PEM; loading it back must accept its serial too."""
    from card.emulator.card import CardFaults
    from card.errors import CardRemovedError

    card = make_card(key_type=KeyType.ECCP256)
    card.state.objects["5FC105"] = encode_certificate_object(resigned(der_of(card, Slot.AUTHENTICATION), ca, -7)).hex()
    card.state.objects["5FC10A"] = encode_certificate_object(resigned(der_of(card, Slot.SIGNATURE), ca, -8)).hex()
    card.faults = CardFaults(drop_at={"put-data": 1})
    try:
        first = renew(PivSession(card), context(tmp_path, ca), Secret(PIN))
        assert not first.ok and first.journal_kept
    except CardRemovedError:
        pass
    card.insert()
    second = renew(PivSession(card), context(tmp_path, ca), Secret(PIN))
    assert second.ok, [str(s.error) for s in second.slots]


def test_the_negative_serial_certificate_answers_like_a_certificate(make_card, ca, tmp_path) -> None:  # type: ignore[no-untyped-def]
    card = make_card(key_type=KeyType.ECCP256)
    der = resigned(der_of(card, Slot.AUTHENTICATION), ca, -0x3039)
    cert = load_certificate(der)
    assert isinstance(cert, NonPositiveSerialCertificate)
    assert cert.serial_number == -0x3039
    assert cert.public_bytes(DER) == der
    assert load_certificate_pem(cert.public_bytes(serialization.Encoding.PEM)).public_bytes(DER) == der
    assert fingerprint(cert) == hashlib.sha256(der).hexdigest() == cert.fingerprint(hashes.SHA256()).hex()
    assert cert.subject.rfc4514_string().endswith("CN=Alex Example")
    assert cert.issuer == ca.cert.subject
    assert cert.tbs_certificate_bytes == asn1_x509.Certificate.load(der)["tbs_certificate"].dump()
    cert.verify_directly_issued_by(ca.cert)  # over its own bytes, not the positive copy's
    init_ca(tmp_path / "other", "cardrenew Test CA")  # same name, other key
    with pytest.raises(InvalidSignature):
        cert.verify_directly_issued_by(LocalCA(tmp_path / "other").cert)
    import copy

    assert copy.deepcopy(cert) == cert and hash(copy.copy(cert)) == hash(cert)


# -- GENERATE ASYMMETRIC KEY PAIR replies (SP 800-73-4 Part 2 §3.3.2) --------------------------------
def template(*items: bytes) -> bytes:
    return tlv.tlv(b"\x7f\x49", b"".join(items))


GOOD_MODULUS = b"\xc3" + b"\x5b" * 254 + b"\x01"  # odd, top bit set; cryptography does not check primality


@pytest.mark.parametrize("key_type,reply,why", [
    (KeyType.RSA2048, template(tlv.tlv(0x81, GOOD_MODULUS), tlv.tlv(0x82, b"\x02")), "not valid"),  # even e
    (KeyType.RSA2048, template(tlv.tlv(0x81, GOOD_MODULUS), tlv.tlv(0x82, b"\x01")), "not valid"),
    (KeyType.RSA2048, template(tlv.tlv(0x81, GOOD_MODULUS[:-1] + b"\x02"), tlv.tlv(0x82, b"\x01\x00\x01")), "even"),
    (KeyType.RSA2048, template(tlv.tlv(0x81, b"\x00" + GOOD_MODULUS[1:]), tlv.tlv(0x82, b"\x01\x00\x01")), "not 2048 bits"),
    (KeyType.RSA2048, template(tlv.tlv(0x81, GOOD_MODULUS), tlv.tlv(0x82, b"\x01" * 300)), "300 bytes long"),
    (KeyType.RSA2048, template(tlv.tlv(0x81, GOOD_MODULUS)), "incomplete"),
    (KeyType.RSA2048, template(tlv.tlv(0x81, GOOD_MODULUS[:100]), tlv.tlv(0x82, b"\x01\x00\x01")), "incomplete"),
    (KeyType.ECCP256, template(tlv.tlv(0x86, b"\x04" + b"\x01" * 64)), "not on the curve"),
    (KeyType.ECCP256, template(tlv.tlv(0x86, b"\x02" + b"\x01" * 32)), "incomplete"),
    (KeyType.ECCP384, template(tlv.tlv(0x86, b"\x04" + b"\x01" * 64)), "incomplete"),
    (KeyType.ECCP256, tlv.tlv(0x7C, b""), "expected one TLV 7F49"),
    (KeyType.ECCP256, b"\x7f\x00", "TLV truncated"),
    (KeyType.ECCP256, b"\x7f\x49\x82\x01", "truncated"),
    (KeyType.ECCP256, b"", "expected one TLV 7F49"),
], ids=["rsa-even-e", "rsa-e-1", "rsa-even-n", "rsa-2040-bits", "rsa-long-e", "rsa-no-e", "rsa-short-n", "ec-off-curve",
        "ec-compressed", "ec-p384-short", "not-7f49", "7f-truncated-tag", "7f49-truncated", "empty"])
def test_a_bad_generate_reply_is_a_bad_response_error(key_type: KeyType, reply: bytes, why: str) -> None:
    """Was: a plain ValueError from cryptography (RSA exponent 1 or even, even modulus)."""
    with pytest.raises(BadResponseError, match=why):
        parse_public_key(key_type, reply)


class RewriteGenerate:
    """The in-process card, but GENERATE's reply (INS 47) is replaced by ``reply``."""

    def __init__(self, card: SoftPivCard, reply: bytes) -> None:
        self.card, self.reply, self.name = card, reply, card.name

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        data, sw = self.card.transmit(apdu)
        # an RSA template is longer than 256 bytes: the card answers 61 XX and GET RESPONSE follows
        return (self.reply, 0x9000) if apdu[1] == 0x47 and (sw == 0x9000 or sw >> 8 == 0x61) else (data, sw)

    def transaction(self):  # type: ignore[no-untyped-def]
        return self.card.transaction()

    def close(self) -> None:
        self.card.close()


def test_a_bad_generate_reply_ends_the_slot_with_the_documented_error(make_card, ca, tmp_path) -> None:  # type: ignore[no-untyped-def]
    card = make_card(key_type=KeyType.RSA2048)
    bad = template(tlv.tlv(0x81, GOOD_MODULUS), tlv.tlv(0x82, b"\x02"))
    result = renew(PivSession(RewriteGenerate(card, bad)), context(tmp_path, ca), Secret(PIN))  # type: ignore[arg-type]
    assert not result.ok
    failed = [r for r in result.slots if r.error is not None]
    assert failed and isinstance(failed[0].error, BadResponseError), failed[0].error
    assert "RSA public key from the card is not valid" in str(failed[0].error)


# -- certificate objects (53 { 70, 71, FE }) --------------------------------------------------------
def test_certificate_objects_that_are_not_certificates(make_card) -> None:  # type: ignore[no-untyped-def]
    card = make_card(key_type=KeyType.ECCP256)
    der = der_of(card, Slot.AUTHENTICATION)
    packed = gzip.compress(der, mtime=0)
    cases = {
        "70 04 68656A0A 71 01 00": "not an X.509 certificate",  # F15's junk
        "71 01 00 FE 00": "no certificate tag 70",
        "70 81": "TLV truncated",
        "70 80 00 00": "length form 80 not supported",  # indefinite length
        "70 84 00 00 00 01 00": "length form 84 not supported",
        "70 83 FF FF FF 00": "claims 16777215 bytes",
        (tlv.tlv(0x70, der[:-1]) + tlv.tlv(0x71, b"\x00")).hex(): "not an X.509 certificate",  # truncated DER
        (tlv.tlv(0x70, der + b"\x00") + tlv.tlv(0x71, b"\x00")).hex(): "not an X.509 certificate",  # trailing byte
        (tlv.tlv(0x70, der) + tlv.tlv(0x71, b"\x01")).hex(): "could not be decoded",  # says gzip, is not
        (tlv.tlv(0x70, packed[:-20]) + tlv.tlv(0x71, b"\x01")).hex(): "cut short",
        (tlv.tlv(0x70, gzip.compress(b"\x30" * 70000)) + tlv.tlv(0x71, b"\x01")).hex(): "beyond 64 KiB",  # a bomb
        (tlv.tlv(0x70, gzip.compress(b"hello")) + tlv.tlv(0x71, b"\x01")).hex(): "not an X.509 certificate",
    }
    for value, message in cases.items():
        with pytest.raises(CertificateObjectError, match=message):
            decode_certificate_object(bytes.fromhex(value.replace(" ", "")))
    # what does decode: empty objects, gzip by CertInfo or by magic, CertInfo empty, LRC with content
    assert decode_certificate_object(b"") is None
    assert decode_certificate_object(tlv.tlv(0x70, b"") + tlv.tlv(0x71, b"\x00")) is None
    for value in (tlv.tlv(0x70, packed) + tlv.tlv(0x71, b"\x01"), tlv.tlv(0x70, packed) + tlv.tlv(0x71, b"\x00"),
                  tlv.tlv(0x70, der) + tlv.tlv(0x71, b""), tlv.tlv(0x70, der) + tlv.tlv(0xFE, b"\x12"),
                  tlv.tlv(0x70, der)):
        cert = decode_certificate_object(value)
        assert cert is not None and cert.public_bytes(DER) == der


@pytest.mark.parametrize("serial", [12345, -12345])
def test_an_unknown_certificate_version_is_unreadable_not_a_crash(make_card, ca, serial: int) -> None:  # type: ignore[no-untyped-def]
    """Found by the 10,000-input fuzz run: version 4 (INTEGER 3) raised cryptography's InvalidVersion,
    which is not a ValueError, out of the slot read."""
    card = make_card(key_type=KeyType.ECCP256)
    der = resigned(der_of(card, Slot.AUTHENTICATION), ca, serial)
    assert der[8:13] == bytes.fromhex("a003020102")  # [0] { INTEGER 2 } = v3
    v4 = der[:12] + b"\x03" + der[13:]
    with pytest.raises(CertificateObjectError, match="not an X.509 certificate"):
        load_certificate(v4)
    card.state.objects["5FC105"] = encode_certificate_object(v4).hex()
    status = PivSession(card).read_certificate(Slot.AUTHENTICATION)
    assert status.certificate is None and "X509 version" in (status.error or "")


def test_a_pem_that_is_not_a_certificate_is_a_certificate_object_error() -> None:
    for pem in ("", "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                "-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n",
                "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"):
        with pytest.raises(CertificateObjectError):
            load_certificate_pem(pem)


# -- APDU responses -----------------------------------------------------------------------------------
class Endless:
    """A card that answers every command with the same (data, SW)."""

    name = "endless"

    def __init__(self, data: bytes, sw: int) -> None:
        self.data, self.sw, self.sent = data, sw, 0

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent += 1
        return self.data, self.sw

    def transaction(self):  # type: ignore[no-untyped-def]
        import contextlib

        return contextlib.nullcontext()

    def close(self) -> None:
        pass


@pytest.mark.parametrize("data,sw", [(b"", 0x6101), (b"\x00" * 255, 0x6100), (b"", 0x6100)])
def test_get_response_chains_are_bounded(data: bytes, sw: int) -> None:
    transport = Endless(data, sw)
    with pytest.raises(BadResponseError):
        ApduProtocol(transport).send(CommandApdu(0, 0xCB, 0x3F, 0xFF, b"\x5c\x01\x7e"))
    assert transport.sent <= MAX_GET_RESPONSE_ROUNDS + 2


def test_an_oversized_single_response_is_refused() -> None:
    with pytest.raises(BadResponseError, match="longer than"):
        ApduProtocol(Endless(b"\x00" * (MAX_RESPONSE_BYTES + 1), 0x9000)).send(CommandApdu(0, 0xCB, 0x3F, 0xFF))


def test_a_card_that_keeps_answering_6cxx_is_asked_once_more_only() -> None:
    transport = Endless(b"", 0x6C10)
    data, sw = ApduProtocol(transport).send(CommandApdu(0, 0xCB, 0x3F, 0xFF))
    assert (data, sw, transport.sent) == (b"", 0x6C10, 2)


def test_a_card_error_is_what_every_parser_raises() -> None:
    """The documented errors are CardError subclasses with a title and a next step."""
    for error in (BadResponseError, CertificateObjectError):
        assert issubclass(error, CardError) and error.title and error("x").next_step
