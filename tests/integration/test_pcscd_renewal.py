"""End to end through pyscard → pcscd → vpcd → our software card, judged by OpenSC and openssl."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from tests.integration.conftest import READER, reader_has_card, run_cardrenew

OPENSC_PKCS11 = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
pytestmark = pytest.mark.pcscd


def opensc(*args: str) -> str:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def read_with_opensc(workdir: Path, pkcs15_id: str) -> x509.Certificate:
    pem = opensc("pkcs15-tool", "--reader", READER, "--read-certificate", pkcs15_id)
    path = workdir / f"cert-{pkcs15_id}.pem"
    path.write_text(pem)
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(workdir / "ca" / "ca.pem"), str(path)],
                            capture_output=True, text=True)
    assert verify.returncode == 0 and ": OK" in verify.stdout, verify.stdout + verify.stderr
    return x509.load_pem_x509_certificate(pem.encode())


def sign_with_pkcs11(workdir: Path, key_id: str, mechanism: str, cert: x509.Certificate) -> None:
    """pkcs11-tool signs with the card key; openssl verifies with the certificate's public key."""
    msg, sig, pub = workdir / "msg.bin", workdir / f"sig-{key_id}.bin", workdir / f"pub-{key_id}.pem"
    msg.write_bytes(b"renewed card test signature")
    from cryptography.hazmat.primitives import serialization

    pub.write_bytes(cert.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    opensc("pkcs11-tool", "--module", OPENSC_PKCS11, "--slot-description", READER, "--login", "--pin", "123456",
           "--sign", "--id", key_id, "-m", mechanism, "--input-file", str(msg), "--output-file", str(sig),
           *(["--signature-format", "openssl"] if "ECDSA" in mechanism else []))
    verify = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature", str(sig), str(msg)],
                            capture_output=True, text=True)
    assert "Verified OK" in verify.stdout, verify.stdout + verify.stderr


def status(workdir: Path) -> dict:  # type: ignore[type-arg]
    out = run_cardrenew(workdir, "status", "--json")
    return json.loads(out.stdout)


@pytest.mark.parametrize("key_type,mechanism", [("RSA2048", "SHA256-RSA-PKCS"), ("ECCP256", "ECDSA-SHA256")])
def test_renew_headless_then_opensc_reads_and_signs(serve_card, workdir: Path, key_type: str, mechanism: str) -> None:  # type: ignore[no-untyped-def]
    serve_card(key_type=key_type)
    before = status(workdir)
    assert before["update"] == "available" and before["exit_code"] == 10
    listing = opensc("pkcs15-tool", "--reader", READER, "--list-certificates")
    assert "PIV Authentication" in listing and "Digital Signature" in listing

    out = run_cardrenew(workdir, "renew", "--pin-stdin", "--yes", "--json", stdin="123456\n")
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["outcome"] == "renewed" and [s["slot"] for s in report["slots"]] == ["9A", "9C"]

    listing = opensc("pkcs15-tool", "--reader", READER, "--list-certificates")
    assert "PIV Authentication" in listing and "Digital Signature" in listing
    new_9a = read_with_opensc(workdir, "01")
    new_9c = read_with_opensc(workdir, "02")
    old_serials = {s["slot"]: s["serial"] for s in before["slots"]}
    assert f"{new_9a.serial_number:X}" == report["slots"][0]["new_serial"] != old_serials["9A"]
    assert f"{new_9c.serial_number:X}" == report["slots"][1]["new_serial"] != old_serials["9C"]
    sign_with_pkcs11(workdir, "01", mechanism, new_9a)
    after = status(workdir)
    assert after["exit_code"] == 0 and all(s["state"] == "ok" for s in after["slots"])


def test_wrong_pin_shows_tries_left_and_changes_nothing(serve_card, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    serve_card()
    before = status(workdir)
    out = run_cardrenew(workdir, "renew", "--pin-stdin", "--yes", stdin="000000\n")
    assert out.returncode == 4
    assert "2 tries left" in out.stderr
    after = status(workdir)
    assert [s["serial"] for s in after["slots"]] == [s["serial"] for s in before["slots"]]
    assert after["pin_retries"] == 2


def test_not_due_and_expired_change_nothing(serve_card, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    card = serve_card(expires_in_days=200)
    out = run_cardrenew(workdir, "renew", "--pin-stdin", "--yes", "--json", stdin="123456\n")
    assert out.returncode == 10, out.stdout + out.stderr
    assert json.loads(out.stdout)["next_renewal_date"]
    card.stop()
    serve_card(expires_in_days=-2)
    out = run_cardrenew(workdir, "renew", "--pin-stdin", "--yes", stdin="123456\n")
    assert out.returncode == 11
    assert "expired" in out.stderr and "Registration Authority" in out.stderr


def test_card_pulled_during_write_resumes_on_next_run(serve_card, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    serve_card(extra=["--drop-at-put-data", "2", "--reinsert-after", "1"])
    first = run_cardrenew(workdir, "renew", "--pin-stdin", "--yes", "--json", stdin="123456\n")
    report = json.loads(first.stdout)
    assert first.returncode in (3, 13), first.stdout + first.stderr
    assert report["journal_kept"] is True if "journal_kept" in report else True
    reader_has_card(True)
    st = status(workdir)
    assert st["update"] == "resume" and st["pending_reference"]
    second = run_cardrenew(workdir, "renew", "--pin-stdin", "--yes", "--json", stdin="123456\n")
    assert second.returncode == 0, second.stdout + second.stderr
    assert json.loads(second.stdout)["reference"] == st["pending_reference"]
    sign_with_pkcs11(workdir, "01", "SHA256-RSA-PKCS", read_with_opensc(workdir, "01"))
    read_with_opensc(workdir, "02")
