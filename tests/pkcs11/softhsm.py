"""A real PKCS#11 token for tests: SoftHSM2 (Debian ``softhsm2``) in a token directory of its own.

:func:`make_softhsm` initialises a token with ``softhsm2-util --init-token --free`` in a private
directory (``SOFTHSM2_CONF`` points at a ``softhsm2.conf`` written beside it; the system token
directory is never touched), generates the key pairs ON the token with ``pkcs11-tool
--keypairgen`` (the private keys never leave it, as on a real token), reads each public key back,
has the project's embedded CA (:class:`card.enrollment.local.LocalCA`, the ``ca_dir`` fixture)
issue a certificate for it and writes that with ``pkcs11-tool --write-object``. Nothing here goes
through ``card.pkcs11``: the token is made, and judged (``tests/pkcs11/judge.py``), by the real
tools, so a test of our code never grades itself.

:func:`clone_softhsm` copies a made token into another directory (milliseconds; RSA key
generation takes about 0.3 s), which is what the ``softhsm`` fixture does for every test.

Use: the fixtures ``softhsm`` / ``make_softhsm`` in ``tests/pkcs11/conftest.py``; from another test
directory, import them into its conftest (``from tests.pkcs11.conftest import softhsm,
softhsm_template``) or call these functions.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_der_public_key
from cryptography.x509.oid import NameOID

from card.enrollment.local import LocalCA

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
"""Debian's SoftHSM2 PKCS#11 module."""
TOKEN_LABEL = "cardrenew test token"
PIN = "123456"
SO_PIN = "12345678"
HOLDER = "Alex Example"
ORGANISATION = "Example Health Trust"
EMAIL = "alex.example@example.org"


@dataclass(frozen=True)
class KeySpec:
    """One key pair + certificate to put on the token.

    ``key_type``: ``"RSA2048"``, ``"ECCP256"`` or ``"ECCP384"`` (the names of
    :class:`card.piv.model.KeyType`); ``profile_slot``: the PIV slot whose certificate profile the
    CA uses (``"9A"`` client authentication, ``"9C"`` signature + e-mail protection).
    """

    key_id: bytes
    label: str
    key_type: str
    profile_slot: str = "9A"


DEFAULT_KEYS = (
    KeySpec(b"\x01", "Authentication certificate", "RSA2048", "9A"),
    KeySpec(b"\x02", "Signature certificate", "ECCP256", "9C"),
)
"""The two certificates the issue asks for: RSA-2048 and P-256."""

_KEYGEN = {"RSA2048": "rsa:2048", "ECCP256": "EC:secp256r1", "ECCP384": "EC:secp384r1"}


@dataclass(frozen=True)
class TokenCert:
    """A certificate the fixture put on the token, with its key's CKA_ID and CKA_LABEL."""

    spec: KeySpec
    certificate: x509.Certificate

    @property
    def key_id(self) -> bytes:
        return self.spec.key_id

    @property
    def label(self) -> str:
        return self.spec.label


@dataclass(frozen=True)
class SoftHsm:
    """A SoftHSM2 token in a directory of its own.

    Attributes:
        directory: holds ``softhsm2.conf`` and ``tokens/``.
        conf: the ``softhsm2.conf`` to put in ``SOFTHSM2_CONF`` (:meth:`env`).
        module: the PKCS#11 module path; label, pin, so_pin: the token's.
        certificates: what the fixture wrote, in the order of the specs.
    """

    directory: Path
    module: Path = MODULE
    label: str = TOKEN_LABEL
    pin: str = PIN
    so_pin: str = SO_PIN
    certificates: tuple[TokenCert, ...] = field(default=())

    @property
    def conf(self) -> Path:
        return self.directory / "softhsm2.conf"

    @property
    def token_dir(self) -> Path:
        return self.directory / "tokens"

    def env(self) -> dict[str, str]:
        """The environment for a process that should see this token (and only it)."""
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf)}

    def tool(self, *args: str, login: bool = True, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run the real ``pkcs11-tool`` on this token (``--login --pin`` unless ``login`` is False)."""
        cmd = ["pkcs11-tool", "--module", str(self.module), "--token-label", self.label]
        if login:
            cmd += ["--login", "--pin", self.pin]
        return subprocess.run([*cmd, *args], env=self.env(), capture_output=True, check=check, timeout=60)

    def make_read_only(self) -> None:
        """Take the write permission off the token's files (a token on read-only storage).

        Root ignores file modes, so the test that uses this is skipped as root unless it uses a
        read-only bind mount; see ``tests/pkcs11/test_token_errors.py``."""
        for path in self.token_dir.rglob("*"):
            path.chmod(0o500 if path.is_dir() else 0o400)
        self.token_dir.chmod(0o500)


def _write_conf(directory: Path) -> None:
    (directory / "tokens").mkdir(parents=True, exist_ok=True)
    (directory / "softhsm2.conf").write_text(
        f"directories.tokendir = {directory / 'tokens'}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
        "slots.mechanisms = ALL\n"
    )


def _issue(ca: LocalCA, public_der: bytes, spec: KeySpec, expires_in_days: int, now: dt.datetime) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOLDER),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION)])
    not_after = now + dt.timedelta(days=expires_in_days)
    return ca.issue_initial(subject, load_der_public_key(public_der), spec.profile_slot,
                            not_after - dt.timedelta(days=730), not_after, EMAIL)


def put_certificate(token: SoftHsm, ca: LocalCA, spec: KeySpec, expires_in_days: int = 30,
                    now: dt.datetime | None = None) -> TokenCert:
    """Generate ``spec``'s key pair on ``token`` (``pkcs11-tool --keypairgen``), have ``ca`` issue a
    certificate for its public key and write it with the same CKA_ID and CKA_LABEL."""
    hex_id = spec.key_id.hex()
    token.tool("--keypairgen", "--key-type", _KEYGEN[spec.key_type], "--id", hex_id, "--label", spec.label)
    public_der = token.directory / f"pub-{hex_id}.der"
    token.tool("--read-object", "--type", "pubkey", "--id", hex_id, "-o", str(public_der))
    cert = _issue(ca, public_der.read_bytes(), spec, expires_in_days, now or dt.datetime.now(dt.timezone.utc))
    public_der.unlink()
    cert_der = token.directory / f"cert-{hex_id}.der"
    cert_der.write_bytes(cert.public_bytes(Encoding.DER))
    token.tool("--write-object", str(cert_der), "--type", "cert", "--id", hex_id, "--label", spec.label)
    cert_der.unlink()
    return TokenCert(spec, cert)


def make_softhsm(directory: Path, ca: LocalCA, keys: tuple[KeySpec, ...] = DEFAULT_KEYS, *,
                 expires_in_days: int = 30, label: str = TOKEN_LABEL, now: dt.datetime | None = None) -> SoftHsm:
    """A new SoftHSM2 token in ``directory`` holding ``keys`` with certificates from ``ca``.

    The certificates expire in ``expires_in_days`` days (issued two years before, clamped to the
    CA's start), as the emulator's cards do (card/emulator/create.py).
    """
    _write_conf(directory)
    token = SoftHsm(directory, label=label)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN],
                   env=token.env(), capture_output=True, check=True, timeout=60)
    certs = tuple(put_certificate(token, ca, spec, expires_in_days, now) for spec in keys)
    return replace(token, certificates=certs)


def clone_softhsm(template: SoftHsm, directory: Path) -> SoftHsm:
    """A copy of ``template``'s token in ``directory`` (same label, serial, keys and certificates)."""
    _write_conf(directory)
    shutil.rmtree(directory / "tokens")
    shutil.copytree(template.token_dir, directory / "tokens")
    return replace(template, directory=directory)
