"""The SCEP issuer works unchanged with a PKCS#11 token (issue 14): the real ``cardrenew renew`` renews
a SoftHSM2 token's two RSA-2048 certificates against Debian's scepserver (the ScepLab of
test_scep.py, in a private network namespace), side by side; ``pkcs11-tool`` then finds each label
on a new key whose SCEP-issued certificate verifies its signature and chains to scepserver's CA
(``openssl verify``), and the old keys gone. Needs root (a network namespace)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from card.enrollment.local import LocalCA
from tests.integration.conftest import CARDRENEW
from tests.integration.test_scep import CHALLENGE, ScepLab, scep  # noqa: F401 - the fixture
from tests.pkcs11 import judge
from tests.pkcs11.softhsm import KeySpec, make_softhsm

KEYS = (KeySpec(b"\x01", "Authentication certificate", "RSA2048", "9A"),
        KeySpec(b"\x02", "VPN certificate", "RSA2048", "9A"))
"""RSA keys with digitalSignature + clientAuth certificates: what scepserver 2.1.0 issues (the engine
refuses a renewal that changes a certificate's usages)."""


@pytest.mark.skipif(not Path("/usr/lib/softhsm/libsofthsm2.so").is_file(), reason="softhsm2 is not installed")
def test_scep_renews_a_softhsm2_token_side_by_side(tmp_path: Path, ca_dir: Path, scep: ScepLab) -> None:  # noqa: F811
    scep.start(8080)
    token = make_softhsm(tmp_path / "softhsm", LocalCA(ca_dir), KEYS)
    old = {spec.key_id: cert.certificate for spec, cert in zip(KEYS, token.certificates, strict=True)}
    config = scep.config(tmp_path)
    config.write_text(config.read_text() + f'\n[card]\ninterface = "pkcs11"\nmodule = "{token.module}"\n'
                      f'token_label = "{token.label}"\n')
    env = dict(token.env(), CARDRENEW_CONFIG=str(config), XDG_STATE_HOME=str(tmp_path / "state"))
    out = subprocess.run(["ip", "netns", "exec", scep.ns, *CARDRENEW, "renew", "--pin-stdin", "--yes", "--json"],
                         input=f"{token.pin}\n", capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["outcome"] == "renewed" and all(s["renewed"] for s in report["slots"])
    assert report["token"]["renewal_mode"] == "side_by_side"
    # the judge: each label on a working key whose certificate scepserver issued; the old keys are gone
    pairs = judge.working_pairs(token)
    assert sorted(label for label, _ in pairs.values()) == sorted(spec.label for spec in KEYS)
    assert not set(pairs) & set(old) and not judge.certificates_without_key(token)
    for n, (_, certificate) in enumerate(pairs.values()):
        pem = tmp_path / f"new-{n}.pem"
        pem.write_bytes(certificate.public_bytes(Encoding.PEM))
        verify = subprocess.run(["openssl", "verify", "-CAfile", str(scep.depot / "ca.pem"), str(pem)],
                                capture_output=True, text=True)
        assert ": OK" in verify.stdout, verify.stdout + verify.stderr
        # the holder's name as before (scepserver 2.1.0 writes the RDNs in the opposite order)
        assert set(certificate.subject) == set(old[b"\x01"].subject)
    assert CHALLENGE not in "".join(p.read_text(errors="replace") for p in (tmp_path / "state").rglob("*") if p.is_file())


if os.geteuid() != 0:  # pragma: no cover - the namespace needs root, as test_scep.py's tests do
    pytestmark = pytest.mark.skip(reason="needs root for a network namespace")
