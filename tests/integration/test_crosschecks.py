"""Issue 3 item 3: independent tools judge our emulator profiles and our renewal, through pcscd + vpcd.

For each profile × key type the same checks run before and after ``cardrenew renew``:
OpenSC ``pkcs15-tool`` (list/read certificates, list keys), ``piv-tool -A M:9B:<alg>`` (right key
exit 0, wrong key non-zero), ``pkcs11-tool --login --sign`` for 9A and for 9C (context-specific
login, F09) verified with the certificate's public key by openssl, and ``yubico-piv-tool -a status``
/ ``-a read-certificate``. Every check's outcome is written to ``compat-results.json`` (directory
``$CARDRENEW_COMPAT_DIR``, default ``build/``); ``scripts/compat_table.py`` renders the README table
from it.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from card.emulator.create import PROFILES, create_card_file
from card.enrollment.local import LocalCA
from card.piv import DEFAULT_MANAGEMENT_KEY, KeyType, ManagementKeyAlgorithm
from tests.integration.conftest import READER, VPCD_PORT, ServedCard, reader_has_card, run_cardrenew

pytestmark = pytest.mark.pcscd
OPENSC_PKCS11 = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
PIN = "123456"
RESULTS_DIR = Path(os.environ.get("CARDRENEW_COMPAT_DIR", Path(__file__).resolve().parents[2] / "build"))
RESULTS = RESULTS_DIR / "compat-results.json"
_lock = threading.Lock()

CASES = [("piv", "RSA2048"), ("piv", "ECCP256"), ("piv", "ECCP384"),
         ("yubikey5", "RSA2048"), ("yubikey5", "ECCP256"), ("yubikey5", "ECCP384"),
         ("legacy", "RSA2048")]
MECHANISM = {"RSA2048": ("SHA256-RSA-PKCS", "-sha256"), "ECCP256": ("ECDSA-SHA256", "-sha256"),
             "ECCP384": ("ECDSA-SHA384", "-sha384")}


def record(profile: str, key_type: str, phase: str, check: str, ok: bool | None, detail: str = "") -> None:
    """Merge one outcome into the results file (tests may run in any order or subset); ``ok`` None = the
    tool does not support this card (shown as n/a)."""
    alg = ManagementKeyAlgorithm(PROFILES[profile]["management_key_algorithm"]).name  # type: ignore[call-overload]
    with _lock:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        key = f"{profile}|{key_type}|{alg}|{phase}|{check}"
        data[key] = {"profile": profile, "key_type": key_type, "management_key": alg, "phase": phase,
                     "check": check, "ok": ok, "detail": detail[-300:], "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        tmp = RESULTS.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(RESULTS)


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **(env or {})), cwd=cwd)


class Checks:
    """Runs the tool checks against the card in :data:`READER`, recording each outcome."""

    def __init__(self, workdir: Path, profile: str, key_type: str) -> None:
        self.workdir, self.profile, self.key_type = workdir, profile, key_type
        self.alg = ManagementKeyAlgorithm(PROFILES[profile]["management_key_algorithm"])  # type: ignore[call-overload]
        self.failures: list[str] = []

    def check(self, phase: str, name: str, ok: bool, detail: str) -> None:
        record(self.profile, self.key_type, phase, name, ok, detail)
        if not ok:
            self.failures.append(f"{phase} {name}: {detail[-600:]}")

    def pkcs15(self, phase: str) -> dict[str, x509.Certificate]:
        listing = run("pkcs15-tool", "--reader", READER, "--list-certificates")
        ok = listing.returncode == 0 and "PIV Authentication" in listing.stdout and "Digital Signature" in listing.stdout
        self.check(phase, "pkcs15-tool --list-certificates", ok, listing.stdout + listing.stderr)
        certs: dict[str, x509.Certificate] = {}
        read_ok, detail = True, ""
        for pkcs15_id in ("01", "02"):
            out = run("pkcs15-tool", "--reader", READER, "--read-certificate", pkcs15_id)
            pem = self.workdir / f"{phase}-cert-{pkcs15_id}.pem"
            pem.write_text(out.stdout)
            verify = run("openssl", "verify", "-CAfile", str(self.workdir / "ca" / "ca.pem"), str(pem))
            if out.returncode != 0 or ": OK" not in verify.stdout:
                read_ok, detail = False, detail + out.stderr + verify.stdout + verify.stderr
                continue
            certs[pkcs15_id] = x509.load_pem_x509_certificate(out.stdout.encode())
        self.check(phase, "pkcs15-tool --read-certificate", read_ok, detail)
        keys = run("pkcs15-tool", "--reader", READER, "--list-keys")
        want = "Private RSA Key" if self.key_type == "RSA2048" else "Private EC Key"
        field = {"RSA2048": "ModLength      : 2048", "ECCP256": "FieldLength    : 256", "ECCP384": "FieldLength    : 384"}
        ok = keys.returncode == 0 and keys.stdout.count(want) >= 2 and field[self.key_type] in keys.stdout
        self.check(phase, "pkcs15-tool --list-keys", ok, keys.stdout + keys.stderr)
        return certs

    def piv_tool(self, phase: str) -> None:
        right, wrong = self.workdir / "mgmt.key", self.workdir / "wrong.key"
        right.write_text(DEFAULT_MANAGEMENT_KEY.hex())
        bad = bytearray(DEFAULT_MANAGEMENT_KEY)
        bad[0] ^= 0x02  # not a DES parity bit
        wrong.write_text(bytes(bad).hex())
        spec = f"M:9B:{int(self.alg):02X}"
        good = run("piv-tool", "-r", READER, "-A", spec, env={"PIV_EXT_AUTH_KEY": str(right)})
        refused = run("piv-tool", "-r", READER, "-A", spec, env={"PIV_EXT_AUTH_KEY": str(wrong)})
        self.check(phase, f"piv-tool -A {spec}", good.returncode == 0 and refused.returncode != 0,
                   f"right key rc={good.returncode} {good.stderr}; wrong key rc={refused.returncode} {refused.stderr}")

    def pkcs11_sign(self, phase: str, certs: dict[str, x509.Certificate]) -> None:
        mechanism, digest = MECHANISM[self.key_type]
        for key_id, slot in (("01", "9A"), ("02", "9C")):
            name = f"pkcs11-tool --sign {slot}" + (" (context-specific login)" if slot == "9C" else "")
            cert = certs.get(key_id)
            if cert is None:
                self.check(phase, name, False, "no certificate read")
                continue
            msg, sig = self.workdir / "msg.bin", self.workdir / f"{phase}-sig-{key_id}.bin"
            pub = self.workdir / f"{phase}-pub-{key_id}.pem"
            msg.write_bytes(b"cross-check signature " + phase.encode())
            pub.write_bytes(cert.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))
            out = run("pkcs11-tool", "--module", OPENSC_PKCS11, "--slot-description", READER, "--login", "--pin", PIN,
                      "--sign", "--id", key_id, "-m", mechanism, "--input-file", str(msg), "--output-file", str(sig),
                      *(["--signature-format", "openssl"] if "ECDSA" in mechanism else []))
            verify = run("openssl", "dgst", digest, "-verify", str(pub), "-signature", str(sig), str(msg))
            self.check(phase, name, out.returncode == 0 and "Verified OK" in verify.stdout,
                       out.stdout + out.stderr + verify.stdout + verify.stderr)

    def yubico(self, phase: str, certs: dict[str, x509.Certificate]) -> None:
        status = run("yubico-piv-tool", "-r", READER, "-a", "status")
        subjects_ok = status.returncode == 0 and "Slot 9a" in status.stdout and "Slot 9c" in status.stdout
        self.check(phase, "yubico-piv-tool -a status", subjects_ok and "CN=Alex Example" in status.stdout,
                   status.stdout + status.stderr)
        out = run("yubico-piv-tool", "-r", READER, "-a", "read-certificate", "-s", "9a")
        ok = out.returncode == 0 and "01" in certs and \
            x509.load_pem_x509_certificate(out.stdout.encode()) == certs["01"] if out.returncode == 0 else False
        self.check(phase, "yubico-piv-tool -a read-certificate", bool(ok), out.stdout + out.stderr)

    def all(self, phase: str) -> None:
        certs = self.pkcs15(phase)
        self.piv_tool(phase)
        self.pkcs11_sign(phase, certs)
        self.yubico(phase, certs)


@pytest.fixture
def profile_card(pcscd: None, workdir: Path) -> Iterator:  # type: ignore[type-arg]
    served: list[ServedCard] = []

    def _serve(profile: str, key_type: str) -> ServedCard:
        from card.piv import KeyType

        state = workdir / f"{profile}-{key_type}.json"
        create_card_file(state, LocalCA(workdir / "ca"), key_type=KeyType[key_type], profile=profile)
        card = ServedCard(state)
        served.append(card)
        return card

    yield _serve
    for card in reversed(served):
        card.stop()


@pytest.mark.parametrize("profile,key_type", CASES, ids=[f"{p}-{k}" for p, k in CASES])
def test_independent_tools_before_and_after_our_renewal(profile_card, workdir: Path, profile: str, key_type: str) -> None:  # type: ignore[no-untyped-def]
    profile_card(profile, key_type)
    checks = Checks(workdir, profile, key_type)
    checks.all("before")
    out = run_cardrenew(workdir, "renew", "--pin-stdin", "--yes", "--json", stdin=PIN + "\n")
    renewed = out.returncode == 0 and json.loads(out.stdout).get("outcome") == "renewed"
    checks.check("renewal", "cardrenew renew", renewed, out.stdout + out.stderr)
    if renewed:
        checks.all("after")
    assert not checks.failures, "\n".join(checks.failures)


def test_yubico_piv_tool_request_certificate_never_reaches_the_card(pcscd: None, workdir: Path) -> None:
    """The tester's "Failed signing request": yubico-piv-tool 2.2.0 on OpenSSL 3 (Debian 12) fails inside
    OpenSSL before any signing APDU is sent (Yubico/yubico-piv-tool#388 shows the same on real YubiKeys);
    ``-a test-signature``, which signs through libykpiv directly, works on the same card. Not our bug."""
    from card.emulator.card import SoftPivCard
    from card.emulator.create import create_card_state
    from card.emulator.vpcd import serve

    card = SoftPivCard(create_card_state(LocalCA(workdir / "ca")))
    reader_has_card(False, timeout_s=30)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(card, "127.0.0.1", VPCD_PORT, stop), daemon=True)
    thread.start()
    try:
        reader_has_card(True)
        cert = workdir / "9a.pem"
        assert run("yubico-piv-tool", "-r", READER, "-a", "read-certificate", "-s", "9a", "-o", str(cert)).returncode == 0
        pub = workdir / "9a-pub.pem"
        pub.write_bytes(x509.load_pem_x509_certificate(cert.read_bytes()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        start = len(card.trace)
        req = run("yubico-piv-tool", "-r", READER, "-a", "verify-pin", "-P", PIN, "-a", "request-certificate",
                  "-s", "9a", "-S", "/CN=Alex Example/", "-i", str(pub), "-o", str(workdir / "req.pem"))
        sent = [apdu for apdu, _ in card.trace[start:]]
        if req.returncode == 0:  # a yubico-piv-tool that works with OpenSSL 3: then the CSR must verify
            assert "verify OK" in run("openssl", "req", "-in", str(workdir / "req.pem"), "-verify", "-noout").stderr
        else:
            assert "Failed signing request" in req.stderr
            assert any(a[1] == 0x20 and len(a) > 5 for a in sent), "the PIN was verified"
            assert not any(a[1] == 0x87 for a in sent), "a signing APDU reached the card: then the emulator is suspect"
        start = len(card.trace)
        test_sig = run("yubico-piv-tool", "-r", READER, "-a", "verify-pin", "-P", PIN, "-a", "test-signature",
                       "-s", "9a", "-i", str(cert))
        assert test_sig.returncode == 0 and "Successful RSA verification" in test_sig.stderr, test_sig.stderr
        assert any(a[1] == 0x87 and a[3] == 0x9A for a, _ in card.trace[start:])
    finally:
        stop.set()
        thread.join(10)
        reader_has_card(False)


@contextlib.contextmanager
def in_process_card(card):  # type: ignore[no-untyped-def]
    """Serve ``card`` (a SoftPivCard) to pcscd from this process, so the test can read its trace and state."""
    from card.emulator.vpcd import serve

    reader_has_card(False, timeout_s=30)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(card, "127.0.0.1", VPCD_PORT, stop), daemon=True)
    thread.start()
    try:
        reader_has_card(True)
        yield card
    finally:
        stop.set()
        thread.join(10)
        reader_has_card(False)


GENERATE_CASES = CASES


@pytest.mark.parametrize("profile,key_type", GENERATE_CASES, ids=[f"{p}-{k}" for p, k in GENERATE_CASES])
def test_key_generation_with_the_management_key_by_independent_tools(pcscd: None, workdir: Path, profile: str,
                                                                     key_type: str) -> None:
    """``piv-tool -A M:9B:<alg> -G 9A:<alg>`` generates on the card (OpenSC 0.23 then exits 255 building the
    key on OpenSSL 3, piv-protocol.md §14: judged by the card's state); ``yubico-piv-tool -a generate``
    (3DES profiles; 2.2.0 has no AES) returns the card's new public key; ``pkcs11-tool --keypairgen`` is
    refused by OpenSC's PIV driver and changes nothing (F25: not an emulator failure)."""
    from card.emulator.card import SoftPivCard
    from card.emulator.create import create_card_state

    kt = KeyType[key_type]
    card = SoftPivCard(create_card_state(LocalCA(workdir / "ca"), key_type=kt, profile=profile))
    alg = ManagementKeyAlgorithm(card.state.management_key_algorithm)
    keyfile = workdir / "mgmt.key"
    keyfile.write_text(DEFAULT_MANAGEMENT_KEY.hex())
    with in_process_card(card):
        old_9a = card.state.keys["9A"].private_pem
        start = len(card.trace)
        out = run("piv-tool", "-r", READER, "-A", f"M:9B:{int(alg):02X}", "-G", f"9A:{int(kt):02X}",
                  "-o", str(workdir / "gen.pub"), env={"PIV_EXT_AUTH_KEY": str(keyfile)})
        generated = [sw for a, sw in card.trace[start:] if a[1] == 0x47]  # 90 00, or 61 XX for RSA's 270 bytes
        ok = len(generated) == 1 and (generated[0] == 0x9000 or generated[0] >> 8 == 0x61) and card.state.keys["9A"].private_pem != old_9a and card.state.keys["9A"].key_type == kt
        record(profile, key_type, "generate", "piv-tool -A -G", ok, f"rc={out.returncode} {out.stderr}")
        assert ok, out.stdout + out.stderr

        if alg is ManagementKeyAlgorithm.TDES:
            pub = workdir / "yk.pub"
            out = run("yubico-piv-tool", "-r", READER, "-a", "generate", "-s", "9c", "-A", key_type, "-o", str(pub))
            card_pub = serialization.load_pem_private_key(card.state.keys["9C"].private_pem.encode(), None).public_key()
            ok = out.returncode == 0 and serialization.load_pem_public_key(pub.read_bytes()) == card_pub
            record(profile, key_type, "generate", "yubico-piv-tool -a generate", ok, out.stdout + out.stderr)
            assert ok, out.stdout + out.stderr
        else:
            record(profile, key_type, "generate", "yubico-piv-tool -a generate", None, "2.2.0 has no AES management keys")

        before = {k: v.private_pem for k, v in card.state.keys.items()}
        out = run("pkcs11-tool", "--module", OPENSC_PKCS11, "--slot-description", READER, "--login", "--pin", PIN,
                  "--keypairgen", "--key-type", "EC:prime256v1", "--id", "03")
        assert out.returncode != 0 and {k: v.private_pem for k, v in card.state.keys.items()} == before
