"""``Pkcs11Token.calls`` counts every PKCS#11 function call: checked against OpenSC's pkcs11-spy,
which sits between us and SoftHSM2 and logs each call the module receives.

The table this test prints (``-s``) is the benchmark's "PKCS#11 calls per operation" on SoftHSM2
with the fixture's two certificates. The spy also shows ``C_GetInterface`` twice at load (a
PKCS#11 3.0 entry point the binding probes as a symbol; SoftHSM2 2.6 has none, so on it the
binding makes no such call) — those two are the only calls of the spy's log we do not count.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from card.enrollment.local import LocalCA
from card.pkcs11 import Pkcs11Token
from card.piv.model import KeyType
from card.secret import Secret
from card.token import KeyRef
from tests.pkcs11.softhsm import SoftHsm
from tests.pkcs11.tokens import issue_der

SPY = Path("/usr/lib/x86_64-linux-gnu/pkcs11-spy.so")
AUTH, SIGN, NEW = KeyRef(b"\x01", "Authentication certificate"), KeyRef(b"\x02", "Signature certificate"), KeyRef(b"\x03", "n")


def _spied(log: Path) -> list[str]:
    return re.findall(r"^\d+: (C_\w+)", log.read_text(errors="replace"), re.M) if log.exists() else []


@pytest.mark.skipif(not SPY.exists(), reason="OpenSC's pkcs11-spy is not installed")
def test_every_pkcs11_call_is_counted(softhsm: SoftHsm, ca: LocalCA, monkeypatch: pytest.MonkeyPatch) -> None:
    log = softhsm.directory / "spy.log"
    monkeypatch.setenv("PKCS11SPY", str(softhsm.module))
    monkeypatch.setenv("PKCS11SPY_OUTPUT", str(log))
    table: list[tuple[str, int, int]] = []
    token: Pkcs11Token | None = None

    def measure(name: str, operation: Callable[[], object]) -> object:
        seen, counted = len(_spied(log)), token.calls if token else 0
        result = operation()
        calls = _spied(log)[seen:]
        table.append((name, (result if isinstance(result, Pkcs11Token) else token).calls - counted,  # type: ignore[union-attr]
                      len([c for c in calls if c != "C_GetInterface"])))
        return result

    token = measure("open module, find the token", lambda: Pkcs11Token(SPY, softhsm.label))  # type: ignore[assignment]
    assert token is not None
    measure("start (session, mechanisms)", token.start)
    measure("certificates, no PIN", token.certificates)
    measure("pin_tries_left", token.pin_tries_left)
    measure("log_in", lambda: token.log_in(Secret(softhsm.pin)))
    measure("certificates, logged in", token.certificates)
    measure("public_key", lambda: token.public_key(AUTH))
    measure("sign RSA-2048", lambda: token.sign(AUTH, KeyType.RSA2048, b"m"))
    measure("sign P-256", lambda: token.sign(SIGN, KeyType.ECCP256, b"m"))
    measure("decipher (raw RSA)", lambda: token.decipher(AUTH, b"\x00\x02" + b"\x11" * 200 + b"\x00" + b"k" * 53))
    measure("log_in_admin (SoftHSM2: nothing)", token.log_in_admin)
    public = measure("generate_key P-256 (new CKA_ID)", lambda: token.generate_key(NEW, KeyType.ECCP256))
    der = issue_der(ca, public)  # type: ignore[arg-type]
    measure("write_certificate (new)", lambda: token.write_certificate(NEW, der, "n"))
    measure("write_certificate (replace)", lambda: token.write_certificate(NEW, der, "n"))
    measure("relabel", lambda: token.relabel(NEW, "m"))
    measure("delete", lambda: token.delete(NEW))
    measure("close (logout, finalise)", token.close)
    print("\nPKCS#11 calls per operation (SoftHSM2 2.6, two certificates):")
    for name, counted, _ in table:
        print(f"  {name:38} {counted:3}")
    assert [(name, counted) for name, counted, _ in table] == [(name, spied) for name, _, spied in table]
    assert token.calls == sum(counted for _, counted, _ in table)
