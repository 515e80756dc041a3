"""Field reports that need the real stack (pyscard → pcscd → vpcd → our card) and OpenSC to judge."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from card.certificates import encode_certificate_object
from card.emulator.create import create_card_state
from card.enrollment.local import LocalCA
from card.piv import Slot
from tests.card.test_field_reports import certificate_of_size
from tests.integration.conftest import READER, ServedCard, run_cardrenew

pytestmark = pytest.mark.pcscd
DER = serialization.Encoding.DER


@pytest.fixture
def serve_state(pcscd: None, workdir: Path) -> Iterator:  # type: ignore[type-arg]
    served: list[ServedCard] = []

    def _serve(state, name: str = "card.json") -> ServedCard:  # type: ignore[no-untyped-def]
        path = workdir / name
        state.save(path)
        card = ServedCard(path)
        served.append(card)
        return card

    yield _serve
    for card in reversed(served):
        card.stop()


def pkcs15_read(pkcs15_id: str) -> x509.Certificate:
    out = subprocess.run(["pkcs15-tool", "--reader", READER, "--read-certificate", pkcs15_id],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return x509.load_pem_x509_certificate(out.stdout.encode())


def test_f04_1k_2k_3052_and_3_5k_certificates_through_get_response(serve_state, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    """F04: objects of 1 KB, 2 KB (2068: the report's size), 3052 bytes and 3.5 KB, read in 256-byte
    chunks + 61 XX by OpenSC and by our status, each whole."""
    state = create_card_state(LocalCA(workdir / "ca"), slots=(Slot.AUTHENTICATION, Slot.SIGNATURE))
    sizes = {Slot.AUTHENTICATION: 2068, Slot.SIGNATURE: 3584, Slot.KEY_MANAGEMENT: 1024, Slot.CARD_AUTH: 3052}
    certs = {slot: certificate_of_size(size) for slot, size in sizes.items()}
    for slot, der in certs.items():
        state.objects[slot.object_id.hex().upper()] = encode_certificate_object(der).hex().upper()
    serve_state(state)
    for pkcs15_id, slot in (("01", Slot.AUTHENTICATION), ("02", Slot.SIGNATURE), ("03", Slot.KEY_MANAGEMENT),
                            ("04", Slot.CARD_AUTH)):
        assert pkcs15_read(pkcs15_id).public_bytes(DER) == certs[slot], slot
    status = json.loads(run_cardrenew(workdir, "status", "--json").stdout)
    by_slot = {s["slot"]: s for s in status["slots"]}
    for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
        assert by_slot[slot.hex]["sha256"] == hashlib.sha256(certs[slot]).hexdigest()
    assert by_slot["9A"]["error"] is None
    # done-when of issue 3: a certificate too long for the card is a per-slot error, not a crash
    assert by_slot["9C"]["error"] == ("the certificate is 3584 bytes, longer than this card's 3052-byte limit "
                                      "(card.max_certificate_bytes)")


def test_f16_long_non_ascii_subject_through_opensc_and_our_renewal(serve_state, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    """F16: CN of 20 Cyrillic letters + street/locality (> 256 bytes of UTF-8) and an emoji in O, written
    to 9A and 9C, listed by OpenSC, shown by our status, and renewed with the subject bytes unchanged."""
    ca = LocalCA(workdir / "ca")
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "Александра Иванова-Петрова"[:20] + " Ж"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Клиника Здоровье 🏥 NHS Trust"),
        x509.NameAttribute(NameOID.STREET_ADDRESS, "улица Большая Садовая, дом 302-бис, квартира 50, подъезд 4"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Санкт-Петербург, Центральный район, муниципальный округ"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"),
    ])
    assert len(subject.public_bytes()) > 256
    state = create_card_state(ca)
    now = dt.datetime.now(dt.timezone.utc)
    for slot in (Slot.AUTHENTICATION, Slot.SIGNATURE):
        key = serialization.load_pem_private_key(state.keys[slot.hex].private_pem.encode(), None)
        cert = ca.issue_initial(subject, key.public_key(), slot.hex, now - dt.timedelta(days=700),  # type: ignore[union-attr]
                                now + dt.timedelta(days=20))
        state.objects[slot.object_id.hex().upper()] = encode_certificate_object(cert.public_bytes(DER)).hex().upper()
    serve_state(state)
    listing = subprocess.run(["pkcs15-tool", "--reader", READER, "--list-certificates"], capture_output=True,
                             text=True, timeout=60)
    assert listing.returncode == 0 and "PIV Authentication" in listing.stdout, listing.stdout + listing.stderr
    assert pkcs15_read("01").subject.public_bytes() == subject.public_bytes()
    status = json.loads(run_cardrenew(workdir, "status", "--json").stdout)
    assert status["slots"][0]["subject"] == subject.rfc4514_string() and "🏥" in status["slots"][0]["subject"]
    out = run_cardrenew(workdir, "renew", "--pin-stdin", "--yes", "--json", stdin="123456\n")
    assert out.returncode == 0, out.stdout + out.stderr
    for pkcs15_id in ("01", "02"):
        new = pkcs15_read(pkcs15_id)
        assert new.subject.public_bytes() == subject.public_bytes()  # UTF8String kept byte for byte
        assert new.not_valid_after_utc > now + dt.timedelta(days=700)
