"""Section 3: peers on the same virtual card (pcscd + vpcd), counted by the emulator.

Same sequence as ours, per slot 9A and 9C on an RSA-2048 card: generate on the card, get the CA
to certify the new key, import the certificate. yubico-piv-tool also signs a CSR on the card
(``request-certificate``); OpenSC ``piv-tool`` cannot sign, and 0.23 exits 255 after generating on
OpenSSL 3 (the key is generated; we count its APDUs and read the public key from the emulator).
Neither peer does the CA's proof of possession with the old key, a read-back or a test signature.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.common import PIN, CardCounter, ins_name, make_ca, make_state, served, summarize


def _issue(ca: Any, subject: Any, public_key: Any, slot_hex: str, out: Path, pem: bool) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    now = dt.datetime.now(dt.timezone.utc)
    cert = ca.issue_initial(subject, public_key, slot_hex, now - dt.timedelta(minutes=5), now + dt.timedelta(days=730), None)
    out.write_bytes(cert.public_bytes(Encoding.PEM if pem else Encoding.DER))


def _run(cmd: list[str], counter: CardCounter, steps: list[dict[str, Any]], env: dict[str, str] | None = None,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    start = counter.mark()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, input=stdin, timeout=120)
    steps.append({"cmd": " ".join(cmd), "exit": proc.returncode, "apdus": counter.mark() - start,
                  "stderr_tail": proc.stderr.strip()[-160:]})
    return proc


def yubico(workdir: Path, port: int = 35963) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from card.emulator.card import SoftPivCard

    workdir.mkdir(parents=True)
    ca = make_ca(workdir / "ca")
    card = SoftPivCard(make_state(ca))
    counter = CardCounter(card)
    steps: list[dict[str, Any]] = []
    subject = None
    with served(card, port) as reader:
        for slot in ("9a", "9c"):
            pub, csr, crt = workdir / f"pub{slot}.pem", workdir / f"csr{slot}.pem", workdir / f"crt{slot}.pem"
            _run(["yubico-piv-tool", "-r", reader, "-a", "generate", "-s", slot, "-A", "RSA2048", "-o", str(pub)],
                 counter, steps)
            _run(["yubico-piv-tool", "-r", reader, "-P", PIN, "-a", "verify-pin", "-a", "request-certificate",
                  "-s", slot, "-S", "/CN=Alex Example/O=Example Health Trust/", "-i", str(pub), "-o", str(csr)],
                 counter, steps)
            try:
                req = x509.load_pem_x509_csr(csr.read_bytes())
                subject = req.subject
                _issue(ca, subject, req.public_key(), slot.upper(), crt, pem=True)
            except (OSError, ValueError):
                _issue(ca, x509.Name.from_rfc4514_string("CN=Alex Example"), load_pem_public_key(pub.read_bytes()),
                       slot.upper(), crt, pem=True)
            _run(["yubico-piv-tool", "-r", reader, "-a", "import-certificate", "-s", slot, "-i", str(crt)],
                 counter, steps)
    ok = all(s["exit"] == 0 for s in steps)
    return {"tool": "yubico-piv-tool " + _version(["yubico-piv-tool", "--version"]),
            "sequence": "per slot: generate; verify-pin + request-certificate (CSR signed on the card); "
                        "import-certificate (3DES default management key, -r on the virtual reader)",
            "all_exit_0": ok,
            "note": None if ok else "request-certificate failed against the SoftPivCard after VERIFY (not investigated); "
                                    "the count then lacks the CSR signature (about 3 APDUs per slot for RSA-2048)",
            **_totals(counter), "steps": steps}


def opensc(workdir: Path, port: int = 35963) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from card.emulator.card import SoftPivCard

    workdir.mkdir(parents=True)
    ca = make_ca(workdir / "ca")
    card = SoftPivCard(make_state(ca))
    counter = CardCounter(card)
    keyfile = workdir / "admin.key"
    keyfile.write_text(":".join(f"{b:02X}" for b in bytes.fromhex("010203040506070801020304050607080102030405060708")) + "\n")
    env = dict(os.environ, PIV_EXT_AUTH_KEY=str(keyfile))
    steps: list[dict[str, Any]] = []
    with served(card, port) as reader:
        for slot in ("9A", "9C"):
            _run(["piv-tool", "-r", reader, "-A", "M:9B:03", "-G", f"{slot}:07", "-o", str(workdir / f"pub{slot}")],
                 counter, steps, env)
            key = serialization.load_pem_private_key(card.state.keys[slot].private_pem.encode(), None)
            crt = workdir / f"crt{slot}.pem"
            _issue(ca, x509.Name.from_rfc4514_string("CN=Alex Example,O=Example Health Trust"), key.public_key(), slot,
                   crt, pem=True)
            _run(["piv-tool", "-r", reader, "-A", "M:9B:03", "-C", slot, "-i", str(crt)], counter, steps, env)
    return {"tool": "OpenSC piv-tool " + _version(["opensc-tool", "--info"]),
            "sequence": "per slot: -A M:9B:03 -G <slot>:07; -A M:9B:03 -C <slot> -i cert.pem (no CSR: piv-tool cannot sign)",
            "note": "piv-tool 0.23 exits 255 after -G on OpenSSL 3 although the card generated the key "
                    "(reference/piv-protocol.md §14); APDUs are counted anyway",
            **_totals(counter), "steps": steps}


def _totals(counter: CardCounter) -> dict[str, Any]:
    s = summarize(counter.records)
    return {"apdus": s["apdus"], "bytes_out": s["bytes_out"], "bytes_in": s["bytes_in"],
            "by_instruction": {k: v["apdus"] for k, v in s["by_instruction"].items()}}


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()
    except OSError:
        return "(missing)"
    for line in out:
        if "OpenSC" in line or "yubico" in line or line[:1].isdigit():
            return line.split()[-1] if "yubico" in line else line.strip()
    return out[0] if out else ""


__all__ = ["ins_name", "opensc", "yubico"]
