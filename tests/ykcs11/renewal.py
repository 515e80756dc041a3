"""What the renewal tests through libykcs11 share: a working directory with its own embedded CA and a
configuration naming the module, ``cardrenew`` run as a child on the ykcs11 pcscd, and OpenSC's
verdict on the card afterwards."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from card.enrollment.local import LocalCA, init_ca
from tests.ykcs11 import judge
from tests.ykcs11.pcscd import CARDRENEW, OPENSC_PKCS11, PIN, YKCS11, YkPcscd

CONFIG = """[renewal]
window_days = 90

[issuer]
type = "local"
directory = "ca"

[management_key]
source = "default"

[card]
interface = "pkcs11"
module = "{module}"
"""


@dataclass
class Workdir:
    """A renewal's directory: ``ca/`` (the embedded CA the card's certificates come from) and
    ``config.toml`` (``[card] interface = "pkcs11"`` with libykcs11)."""

    path: Path
    pcscd: YkPcscd

    @classmethod
    def make(cls, path: Path, pcscd: YkPcscd) -> Workdir:
        init_ca(path / "ca", "cardrenew ykcs11 Test CA")
        (path / "config.toml").write_text(CONFIG.format(module=YKCS11))
        return cls(path, pcscd)

    @property
    def ca(self) -> LocalCA:
        return LocalCA(self.path / "ca")

    def cardrenew(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """``cardrenew ARGS`` as a child on the ykcs11 pcscd, with this directory's configuration."""
        return self.pcscd.run(CARDRENEW + list(args), stdin=stdin, cwd=self.path, timeout=180,
                              CARDRENEW_CONFIG=str(self.path / "config.toml"))

    def renew(self, pin: str = PIN) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        """``cardrenew renew --pin-stdin --yes --json``: the process and its JSON report ({} when none)."""
        done = self.cardrenew("renew", "--pin-stdin", "--yes", "--json", stdin=pin + "\n")
        try:
            report = json.loads(done.stdout) if done.stdout.strip() else {}
        except json.JSONDecodeError:
            report = {}
        return done, report

    def status(self) -> dict[str, Any]:
        done = self.cardrenew("status", "--json")
        assert done.stdout.strip(), done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]


def opensc_verdict(work: Workdir, key_type_ec: bool, old_serials: dict[str, int]) -> dict[str, x509.Certificate]:
    """OpenSC's judgement of a renewed card: both certificates listed, each chains to the CA, is not
    the old one, and its key on the card signs what the certificate verifies (opensc-pkcs11.so).

    Returns: PKCS#11 id → the certificate OpenSC read.
    """
    assert judge.opensc_certificate_ids(work.pcscd) >= {"01", "02"}
    ca_pem = work.path / "ca" / "ca.pem"
    found: dict[str, x509.Certificate] = {}
    for key_id in ("01", "02"):
        cert = judge.read_certificate_opensc(work.pcscd, key_id)
        assert cert.serial_number != old_serials[key_id], f"{key_id} still holds the old certificate"
        pem = work.path / f"opensc-{key_id}.pem"
        pem.write_bytes(cert.public_bytes(judge.serialization.Encoding.PEM))
        verify = subprocess.run(["openssl", "verify", "-CAfile", str(ca_pem), str(pem)], capture_output=True, text=True)
        assert verify.returncode == 0 and ": OK" in verify.stdout, verify.stdout + verify.stderr
        message = os.urandom(40)
        signature = judge.sign(work.pcscd, OPENSC_PKCS11, key_id, message, work.path, ec_key=key_type_ec)
        assert judge.verifies(cert, message, signature), f"the key in {key_id} does not match its new certificate"
        found[key_id] = cert
    return found


def all_but_the_pin_counter(state: Path) -> str:
    """The emulator's state file without its PIN counter: equal before and after = nothing on the
    card changed (no key, certificate or object) but PIN tries."""
    raw = json.loads(state.read_text())
    raw.pop("pin_retries")
    return json.dumps(raw, sort_keys=True)
