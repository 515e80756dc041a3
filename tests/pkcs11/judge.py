"""Judging a PKCS#11 token from outside: the real OpenSC ``pkcs11-tool`` lists the objects, reads
certificates and signs with the keys; ``cryptography`` verifies each signature with the certificate.
None of this goes through ``card.pkcs11``, so a test never grades our code with our code.

The helpers take any object with ``module``, ``label``, ``pin`` and ``env()`` (``SoftHsm`` in
``tests/pkcs11/softhsm.py``; a ykcs11 fixture can offer the same four).

``working_pairs(token)`` is the issue's invariant in one call: every certificate on the token with
a private key of the same CKA_ID that makes a signature the certificate verifies.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa


class JudgedToken(Protocol):
    @property
    def module(self) -> Path: ...

    @property
    def label(self) -> str: ...

    @property
    def pin(self) -> str: ...

    def env(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class P11Object:
    """One object as ``pkcs11-tool -O`` lists it: ``kind`` is ``"Certificate"``, ``"Private Key"``,
    ``"Public Key"`` or ``"Data"``; ``key_id`` is CKA_ID (bytes)."""

    kind: str
    label: str
    key_id: bytes
    usage: str = ""
    access: str = ""


def run_tool(token: JudgedToken, *args: str, login: bool = True, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """``pkcs11-tool --module M --token-label L [--login --pin P] ARGS`` in the token's environment."""
    cmd = ["pkcs11-tool", "--module", str(token.module), "--token-label", token.label]
    if login:
        cmd += ["--login", "--pin", token.pin]
    return subprocess.run([*cmd, *args], env=token.env(), capture_output=True, check=check, timeout=60)


def parse_objects(text: str) -> list[P11Object]:
    """The objects of a ``pkcs11-tool -O`` listing (OpenSC 0.23 layout: a ``<Kind> Object;`` line,
    then indented ``name: value`` lines)."""
    objects: list[P11Object] = []
    current: dict[str, str] | None = None

    def flush() -> None:
        if current is not None:
            objects.append(P11Object(current["kind"], current.get("label", ""), bytes.fromhex(current.get("ID", "")),
                                     current.get("Usage", ""), current.get("Access", "")))

    for line in text.splitlines():
        if not line.startswith(" ") and " Object;" in line:
            flush()
            current = {"kind": line.split(" Object;")[0].strip()}
            continue
        if current is not None and ":" in line and line.startswith("  "):
            name, _, value = line.strip().partition(":")
            current.setdefault(name.strip(), value.strip())
    flush()
    return objects


def objects(token: JudgedToken) -> list[P11Object]:
    """Every object ``pkcs11-tool -O`` lists after logging in (so private keys are included)."""
    return parse_objects(run_tool(token, "-O").stdout.decode("utf-8", "replace"))


def read_certificate(token: JudgedToken, key_id: bytes) -> x509.Certificate:
    """The certificate with CKA_ID ``key_id``, read by ``pkcs11-tool --read-object``."""
    out = run_tool(token, "--read-object", "--type", "cert", "--id", key_id.hex(), login=False)
    return x509.load_der_x509_certificate(out.stdout)


def sign(token: JudgedToken, key_id: bytes, data: bytes, key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    """Sign ``data`` with the private key ``key_id`` via ``pkcs11-tool --sign``: RSA
    ``SHA256-RSA-PKCS``; EC ``ECDSA`` over the SHA-256 digest (SoftHSM2 2.6 has no
    ``ECDSA-SHA256``), DER output (``--signature-format openssl``)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "sig"
        if isinstance(key, rsa.RSAPublicKey):
            src.write_bytes(data)
            args = ["--mechanism", "SHA256-RSA-PKCS"]
        else:
            src.write_bytes(hashlib.sha256(data).digest())
            args = ["--mechanism", "ECDSA", "--signature-format", "openssl"]
        run_tool(token, "--sign", "--id", key_id.hex(), *args, "-i", str(src), "-o", str(out))
        return out.read_bytes()


def verifies(certificate: x509.Certificate, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` over ``data`` (SHA-256) verifies with the certificate's public key."""
    key = certificate.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def key_works(token: JudgedToken, key_id: bytes, certificate: x509.Certificate) -> bool:
    """The private key ``key_id`` signs 32 random bytes and ``certificate`` verifies the signature."""
    key = certificate.public_key()
    assert isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey))
    data = os.urandom(32)
    try:
        signature = sign(token, key_id, data, key)
    except subprocess.CalledProcessError:
        return False
    return verifies(certificate, signature, data)


def working_pairs(token: JudgedToken) -> dict[bytes, tuple[str, x509.Certificate]]:
    """CKA_ID → (certificate label, certificate) for every certificate whose private key (same
    CKA_ID) is on the token and makes signatures the certificate verifies."""
    listed = objects(token)
    private_ids = {o.key_id for o in listed if o.kind == "Private Key"}
    pairs: dict[bytes, tuple[str, x509.Certificate]] = {}
    for obj in listed:
        if obj.kind != "Certificate" or obj.key_id not in private_ids:
            continue
        certificate = read_certificate(token, obj.key_id)
        if key_works(token, obj.key_id, certificate):
            pairs[obj.key_id] = (obj.label, certificate)
    return pairs


def certificates_without_key(token: JudgedToken) -> list[P11Object]:
    """Certificates on the token with no private key of the same CKA_ID (the invariant's breach)."""
    listed = objects(token)
    private_ids = {o.key_id for o in listed if o.kind == "Private Key"}
    return [o for o in listed if o.kind == "Certificate" and o.key_id not in private_ids]
