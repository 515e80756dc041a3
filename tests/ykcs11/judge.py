"""Judges for the ykcs11 tests: pkcs11-tool on Yubico's libykcs11 (what it lists, signs, makes) and
OpenSC (pkcs15-tool, opensc-pkcs11.so) reading the card afterwards — never our own code.

Every call runs as a child process on the ykcs11 pcscd (:meth:`YkPcscd.run`). A step that fails
raises AssertionError with the tool's output.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.ykcs11.pcscd import PIN, SO_PIN, YKCS11, YkPcscd

PIV_ID = {"9A": "01", "9C": "02", "9D": "03", "9E": "04"}
"""The PKCS#11 CKA_ID of a PIV slot, the same for ykcs11 and OpenSC (piv-protocol.md §6)."""


def tool(pcscd: YkPcscd, module: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """``pkcs11-tool --module MODULE ARGS``; ``ok``: assert exit 0."""
    done = pcscd.run(["pkcs11-tool", "--module", module, *args], timeout=120)
    if ok:
        assert done.returncode == 0, f"pkcs11-tool {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done


def ykcs11(pcscd: YkPcscd, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return tool(pcscd, YKCS11, *args, ok=ok)


def certificate_objects(pcscd: YkPcscd, module: str = YKCS11) -> dict[str, str]:
    """CKA_ID (hex) → subject line of every certificate object the module lists (``-O``)."""
    out = tool(pcscd, module, "-O").stdout
    found: dict[str, str] = {}
    for block in out.split("Certificate Object")[1:]:
        ident = re.search(r"ID:\s+([0-9a-f]+)", block)
        subject = re.search(r"subject:\s+(.*)", block)
        if ident:
            found[ident.group(1)] = subject.group(1).strip() if subject else ""
    return found


def read_certificate_ykcs11(pcscd: YkPcscd, key_id: str, tmp: Path) -> x509.Certificate:
    out = tmp / f"yk-cert-{key_id}.der"
    ykcs11(pcscd, "--read-object", "--type", "cert", "--id", key_id, "-o", str(out))
    return x509.load_der_x509_certificate(out.read_bytes())


def read_certificate_opensc(pcscd: YkPcscd, key_id: str) -> x509.Certificate:
    """The certificate as OpenSC's PIV driver reads it (``pkcs15-tool --read-certificate ID``)."""
    done = pcscd.run(["pkcs15-tool", "--read-certificate", key_id])
    assert done.returncode == 0 and "BEGIN CERTIFICATE" in done.stdout, \
        f"OpenSC could not read certificate {key_id}:\n{done.stdout}{done.stderr}"
    return x509.load_pem_x509_certificate(done.stdout.encode())


def opensc_certificate_ids(pcscd: YkPcscd) -> set[str]:
    done = pcscd.run(["pkcs15-tool", "--list-certificates"])
    assert done.returncode == 0, done.stdout + done.stderr
    return set(re.findall(r"ID\s*:\s*([0-9a-f]+)", done.stdout))


def sign(pcscd: YkPcscd, module: str, key_id: str, message: bytes, tmp: Path, ec_key: bool,
         pin: str = PIN) -> bytes:
    """A SHA-256 signature by the key ``key_id`` through ``module`` (PIN login; 9C's
    context-specific login is pkcs11-tool's). EC signatures come back DER-encoded."""
    msg, sig = tmp / f"msg-{key_id}.bin", tmp / f"sig-{key_id}.bin"
    msg.write_bytes(message)
    mechanism = "ECDSA-SHA256" if ec_key else "SHA256-RSA-PKCS"
    tool(pcscd, module, "--login", "--pin", pin, "--sign", "--id", key_id, "-m", mechanism,
         "-i", str(msg), "-o", str(sig))
    raw = sig.read_bytes()
    if ec_key:
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
    return raw


def verifies(certificate: x509.Certificate, message: bytes, signature: bytes) -> bool:
    """Does ``signature`` (SHA-256; RSA PKCS#1 v1.5 or DER ECDSA) verify with the certificate's key?"""
    key = certificate.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def public_key_der(certificate: x509.Certificate) -> bytes:
    return public_key_der_of(certificate.public_key())


def public_key_der_of(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki(der: bytes) -> bytes:
    """A public key's SubjectPublicKeyInfo with a named curve (pkcs11-tool exports EC keys with
    explicit curve parameters)."""
    return serialization.load_der_public_key(der).public_bytes(serialization.Encoding.DER,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo)


SO_LOGIN = ("--login", "--login-type", "so", "--so-pin", SO_PIN)
"""ykcs11's SO login: the management key (hex) as SO PIN."""
