"""A small Registration Authority for the SCEP tests: the deployment side of the RA hook.

``scep_ra.py hook TOKENS TRUSTED_CA [--refuse REASON]`` is cardrenew's ``issuer.challenge_command``:
it reads the proof of possession (JSON on stdin, see ``ScepIssuer._ask_ra``), checks that the old
certificate was issued by TRUSTED_CA and is valid now, that the signed message names this slot,
transaction and certificate and is recent, and that the old key's signature verifies; then it
stores a one-time challenge in TOKENS (bound to the certificate's subject) and prints it.

``scep_ra.py verify TOKENS`` is scepserver's ``-csrverifierexec``: it reads the CSR (DER) on stdin
and accepts it (exit 0) only if its challengePassword is an unused token for the CSR's subject,
which it then spends.

With ``"dry_run": true`` in the proof (``cardrenew renew --check``; the deployment sets
``issuer.challenge_dry_run = true``) the hook makes every check, then exits 0 printing nothing and
storing no token: a dry run spends no challenge. ``--ignore-dry-run`` plays a hook that does not
honour it (it hands out a challenge all the same).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import AttributeOID


def refuse(reason: str) -> int:
    print(reason, file=sys.stderr)
    return 1


def hook(tokens: Path, trusted_ca: Path, refuse_reason: str | None, ignore_dry_run: bool = False) -> int:
    proof = json.loads(sys.stdin.read())
    if refuse_reason:
        return refuse(refuse_reason)
    cert = x509.load_pem_x509_certificate(proof["old_certificate"].encode())
    ca = x509.load_pem_x509_certificate(trusted_ca.read_bytes())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return refuse("this card's certificate was not issued by our CA")
    now = dt.datetime.now(dt.timezone.utc)
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        return refuse("this card's certificate is not valid now")
    message = base64.b64decode(proof["signed_message"])
    fields = dict(line.split("=", 1) for line in message.decode().splitlines()[1:])
    der = cert.public_bytes(serialization.Encoding.DER)
    if (fields.get("slot"), fields.get("transaction"), fields.get("certificate")) != (
            proof["slot"], proof["transaction_id"], hashlib.sha256(der).hexdigest()):
        return refuse("the proof does not name this slot, transaction and certificate")
    if abs((now - dt.datetime.fromisoformat(fields["time"])).total_seconds()) > 300:
        return refuse("the proof is not recent")
    key = cert.public_key()
    signature = base64.b64decode(proof["signature"])
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            return refuse("unsupported key type")
    except InvalidSignature:
        return refuse("the proof of possession does not verify with this card's certificate")
    if proof.get("dry_run") and not ignore_dry_run:  # cardrenew renew --check: would grant; hand out nothing
        return 0
    token = base64.b32encode(os.urandom(15)).decode()
    tokens.mkdir(parents=True, exist_ok=True)
    (tokens / token).write_text(cert.subject.rfc4514_string())
    print(token)
    return 0


def verify(tokens: Path) -> int:
    csr = x509.load_der_x509_csr(sys.stdin.buffer.read())
    try:
        challenge = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        return refuse("no challenge")
    token = challenge.decode() if isinstance(challenge, bytes) else str(challenge)
    path = tokens / token
    if not token.isalnum() or not path.is_file():
        return refuse("unknown or spent challenge")
    if path.read_text() != csr.subject.rfc4514_string():
        return refuse("challenge issued for another subject")
    path.rename(path.with_suffix(".spent"))
    return 0


def main(argv: list[str]) -> int:
    if argv[0] == "hook":
        refuse_reason = argv[argv.index("--refuse") + 1] if "--refuse" in argv else None
        return hook(Path(argv[1]), Path(argv[2]), refuse_reason, "--ignore-dry-run" in argv)
    return verify(Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
