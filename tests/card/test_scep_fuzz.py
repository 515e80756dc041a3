"""Fuzzing the SCEP reply parsers (issue 11: "every parser is total"): GetCACaps, GetCACert (a DER
certificate or a certs-only PKCS#7), the CertRep (SignedData, checked against the CA) and its
EnvelopedData (decrypted with the card key). Whatever arrives, each either parses or raises one of
the documented issuer errors (IssuerReplyInvalid, IssuerRejected, ...: exit 12, nothing changed),
never TypeError or the like. 10,000 inputs each: random bytes and mutations of real replies
(bytes flipped, cut, inserted, repeated). Every input is at most a few KiB (the HTTP layer caps
what reaches a parser at ``issuer.max_response_bytes``). The 10,000-input runs take about half a
minute each, so they are marked ``sweep`` (``.ci/run`` runs them in their own step).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time

import pytest
from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from card.enrollment.base import CardKey, IssuerError
from card.enrollment.scep import ScepIssuer
from card.enrollment.scep_messages import (
    MESSAGE_CERT_REP,
    OID_MESSAGE_TYPE,
    OID_PKI_STATUS,
    OID_RECIPIENT_NONCE,
    OID_SENDER_NONCE,
    OID_TRANSACTION_ID,
    parse_ca_caps,
    parse_ca_certificates,
)
from card.enrollment.scep_settings import ScepIssuerSettings

FUZZ = settings(max_examples=10_000, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NOW = dt.datetime.now(dt.timezone.utc)
TRANSACTION, NONCE = "4A1C0FFEE", b"\x11" * 16


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: rsa.RSAPrivateKey, issuer: str, signer: rsa.RSAPrivateKey) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(key.public_key()).serial_number(7).not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30)).sign(signer, hashes.SHA256()))


# Small RSA keys keep the test fast; the parsers do not care about the size.
CA_KEY = rsa.generate_private_key(65537, 1024)
CA = _cert("Fuzz CA", CA_KEY, "Fuzz CA", CA_KEY)
CARD_KEY = rsa.generate_private_key(65537, 1024)
ISSUED = _cert("Alex Example", CARD_KEY, "Fuzz CA", CA_KEY)
DER = serialization.Encoding.DER


def certs_only(*certs: x509.Certificate) -> bytes:
    """A degenerate certs-only SignedData (RFC 8894 §4.2.1.2, §3.3.2)."""
    return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData({
        "version": "v1", "digest_algorithms": [], "encap_content_info": {"content_type": "data"},
        "certificates": [asn1_x509.Certificate.load(c.public_bytes(DER)) for c in certs], "signer_infos": [],
    })}).dump()


def envelope(content: bytes, recipient: rsa.RSAPublicKey) -> bytes:
    cek, iv = os.urandom(16), os.urandom(16)
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = enc.update(padder.update(content) + padder.finalize()) + enc.finalize()
    return cms.ContentInfo({"content_type": "enveloped_data", "content": cms.EnvelopedData({
        "version": "v0",
        "recipient_infos": [cms.RecipientInfo(name="ktri", value=cms.KeyTransRecipientInfo({
            "version": "v0",
            "rid": cms.RecipientIdentifier(name="issuer_and_serial_number", value=cms.IssuerAndSerialNumber({
                "issuer": asn1_x509.Name.load(CA.subject.public_bytes()), "serial_number": 7})),
            "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
            "encrypted_key": recipient.encrypt(cek, asym_padding.PKCS1v15()),
        }))],
        "encrypted_content_info": {"content_type": "data",
                                   "content_encryption_algorithm": {"algorithm": "aes128_cbc",
                                                                    "parameters": core.OctetString(iv)},
                                   "encrypted_content": ciphertext},
    })}).dump()


def cert_rep(status: str, content: bytes | None, extra: dict[str, core.Asn1Value] | None = None) -> bytes:
    """A CertRep signed by the CA (RFC 8894 §3.3.2)."""
    attrs = [cms.CMSAttribute({"type": "content_type", "values": ["data"]})]
    if content is not None:
        attrs.append(cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(content).digest()]}))
    values = {OID_MESSAGE_TYPE: core.PrintableString(MESSAGE_CERT_REP), OID_PKI_STATUS: core.PrintableString(status),
              OID_TRANSACTION_ID: core.PrintableString(TRANSACTION), OID_RECIPIENT_NONCE: core.OctetString(NONCE),
              OID_SENDER_NONCE: core.OctetString(b"\x22" * 16)} | (extra or {})
    attrs += [cms.CMSAttribute({"type": oid, "values": [v]}) for oid, v in values.items()]
    signed_attrs = cms.CMSAttributes(attrs)
    signature = CA_KEY.sign(signed_attrs.dump(), asym_padding.PKCS1v15(), hashes.SHA256())
    asn1_ca = asn1_x509.Certificate.load(CA.public_bytes(DER))
    return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData({
        "version": "v1", "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
        "encap_content_info": {"content_type": "data", "content": content},
        "certificates": [asn1_ca],
        "signer_infos": [cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value=cms.IssuerAndSerialNumber({
                "issuer": asn1_ca.issuer, "serial_number": asn1_ca.serial_number})),
            "digest_algorithm": {"algorithm": "sha256"}, "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"}, "signature": signature,
        })],
    })}).dump()


ENVELOPE = envelope(certs_only(ISSUED, CA), CARD_KEY.public_key())
CERT_REPS = [cert_rep("0", ENVELOPE), cert_rep("3", None), cert_rep("2", None, {"2.16.840.1.113733.1.9.4":
                                                                                  core.PrintableString("2")})]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few bytes flipped, cut, inserted or repeated; or plain random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=2048))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "length"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            end = at + draw(st.integers(1, 64)) if draw(st.booleans()) else len(data)
            del data[at:end]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 32))] * draw(st.integers(1, 8))
        elif op == "length" and data:  # a DER length byte: 0x80 (indefinite), 0x84 (4-byte length), 0xFF
            data[at] = draw(st.sampled_from([0x80, 0x81, 0x82, 0x84, 0x88, 0xFF, 0x00]))
    return bytes(data)


def scep_issuer() -> ScepIssuer:
    issuer = ScepIssuer(ScepIssuerSettings("http://127.0.0.1:9/scep", None))
    issuer._ca = [CA]  # GetCACert answered (pinned)
    return issuer


def card_key() -> CardKey:
    numbers = CARD_KEY.private_numbers()

    def raw_rsa(block: bytes) -> bytes:  # what the card's GENERAL AUTHENTICATE does (no padding removed)
        value = pow(int.from_bytes(block, "big"), numbers.d, numbers.public_numbers.n)
        return value.to_bytes(128, "big")
    return CardKey(CARD_KEY.public_key(), lambda m: b"", raw_rsa)


def test_the_seeds_are_real_replies() -> None:
    """The fuzzers start from replies that parse: otherwise the mutations test nothing."""
    assert parse_ca_certificates(CA.public_bytes(DER), "application/x-x509-ca-cert") == [CA]
    assert parse_ca_certificates(certs_only(CA, ISSUED), "application/x-x509-ca-ra-cert") == [CA, ISSUED]
    issuer = scep_issuer()
    status, content = issuer._read_cert_rep(CERT_REPS[0], CA, TRANSACTION, NONCE)
    assert status == "0"
    assert issuer._certificate_from(content, card_key(), CARD_KEY.public_key()).certificate == ISSUED
    assert issuer._read_cert_rep(CERT_REPS[1], CA, TRANSACTION, NONCE) == ("3", b"")
    assert issuer._read_cert_rep(CERT_REPS[2], CA, TRANSACTION, NONCE) == ("2", b"2")
    assert parse_ca_caps(b"POSTPKIOperation\r\nAES\nSHA-256\n\n") == {"POSTPKIOPERATION", "AES", "SHA-256"}


@pytest.mark.sweep
@FUZZ
@given(st.binary(max_size=4096) | mutated([b"POSTPKIOperation\nAES\nDES3\nSHA-256\nRenewal\n"]))
def test_getcacaps_never_raises(body: bytes) -> None:
    caps = parse_ca_caps(body)
    assert all(c.isprintable() and c == c.upper() and len(c) <= 64 for c in caps)


@pytest.mark.sweep
@FUZZ
@given(mutated([CA.public_bytes(DER), certs_only(CA, ISSUED)]),
       st.sampled_from(["application/x-x509-ca-cert", "application/x-x509-ca-ra-cert", "", "text/html"]))
def test_getcacert_parses_or_is_an_issuer_error(body: bytes, content_type: str) -> None:
    try:
        certs = parse_ca_certificates(body, content_type)
    except IssuerError:
        return
    assert certs and all(isinstance(c, x509.Certificate) for c in certs)


@pytest.mark.sweep
@FUZZ
@given(mutated(CERT_REPS))
def test_certrep_parses_or_is_an_issuer_error(reply: bytes) -> None:
    try:
        status, payload = scep_issuer()._read_cert_rep(reply, CA, TRANSACTION, NONCE)
    except IssuerError:
        return
    assert status in ("0", "2", "3") and isinstance(payload, bytes)


@pytest.mark.sweep
@FUZZ
@given(mutated([ENVELOPE]))
def test_certrep_envelope_decrypts_or_is_an_issuer_error(enveloped: bytes) -> None:
    try:
        issued = scep_issuer()._certificate_from(enveloped, card_key(), CARD_KEY.public_key())
    except IssuerError:
        return
    assert issued.certificate.public_key().public_numbers() == CARD_KEY.public_key().public_numbers()


@pytest.mark.parametrize("body", [
    b"\x30\x80" * 50_000,  # indefinite lengths nested 50,000 deep
    b"\x30\x84\xff\xff\xff\xff" + b"\x00" * 64,  # a 4 GiB length on 64 bytes
    b"\x30\x82\x10\x00" + b"\x31\x82\x0f\xfc" + b"\x06\x01\x00" * 1364,  # thousands of tiny OIDs
], ids=["deep-nesting", "huge-length", "many-oids"])
def test_pathological_der_is_refused_quickly(body: bytes) -> None:
    """No hang and no blow-up on nesting or huge declared lengths: a bounded check, not a speed test."""
    start = time.monotonic()
    for ctype in ("application/x-x509-ca-cert", "application/x-x509-ca-ra-cert"):
        with pytest.raises(IssuerError):
            parse_ca_certificates(body, ctype)
    with pytest.raises(IssuerError):
        scep_issuer()._read_cert_rep(body, CA, TRANSACTION, NONCE)
    with pytest.raises(IssuerError):
        scep_issuer()._certificate_from(body, card_key(), CARD_KEY.public_key())
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(("old", "new"), [
    (b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x03"),  # X.509 version 4: cryptography's InvalidVersion
    (b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00",  # rsaEncryption's NULL swallowed by the OID:
     b"\x06\x0b\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00"),  # UnsupportedAlgorithm
], ids=["invalid-version", "unknown-key-oid"])
def test_what_the_fuzzer_found_stays_an_issuer_error(old: bytes, new: bytes) -> None:
    """Two crashes the fuzzer found (neither is a ValueError), kept as fixed examples."""
    der = CA.public_bytes(DER)
    assert old in der
    for body, ctype in ((der.replace(old, new, 1), "application/x-x509-ca-cert"),
                        (certs_only(CA).replace(old, new, 1), "application/x-x509-ca-ra-cert")):
        with pytest.raises(IssuerError):
            parse_ca_certificates(body, ctype)
