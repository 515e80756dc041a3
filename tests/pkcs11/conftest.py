"""SoftHSM2 fixtures for the PKCS#11 tests (issue 14); see tests/pkcs11/softhsm.py.

``softhsm``: a fresh copy, per test, of a token holding two certificates issued by the embedded
CA (``ca_dir``, tests/conftest.py) — CKA_ID 01 RSA-2048 "Authentication certificate", CKA_ID 02
P-256 "Signature certificate", expiring in 30 days — with ``SOFTHSM2_CONF`` set to its own
configuration for the test's process. ``make_softhsm``: a factory for other key sets or expiry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from card.enrollment.local import LocalCA
from tests.pkcs11.softhsm import DEFAULT_KEYS, TOKEN_LABEL, KeySpec, SoftHsm, clone_softhsm
from tests.pkcs11.softhsm import make_softhsm as _make_softhsm


@pytest.fixture(scope="session")
def softhsm_template(tmp_path_factory: pytest.TempPathFactory, ca_dir: Path) -> SoftHsm:
    """The token every ``softhsm`` starts as (made once per session: RSA key generation takes ~0.3 s)."""
    return _make_softhsm(tmp_path_factory.mktemp("softhsm-template"), LocalCA(ca_dir))


@pytest.fixture
def softhsm(softhsm_template: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    """A private copy of the template token; ``SOFTHSM2_CONF`` points at it for this test."""
    token = clone_softhsm(softhsm_template, tmp_path / "softhsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(token.conf))
    return token


@pytest.fixture
def make_softhsm(ca_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., SoftHsm]:
    """Factory: ``make_softhsm(keys=DEFAULT_KEYS, expires_in_days=30, label=TOKEN_LABEL)``; sets SOFTHSM2_CONF."""
    count = 0

    def make(keys: tuple[KeySpec, ...] = DEFAULT_KEYS, expires_in_days: int = 30, label: str = TOKEN_LABEL) -> SoftHsm:
        nonlocal count
        count += 1
        token = _make_softhsm(tmp_path / f"softhsm-{count}", LocalCA(ca_dir), keys,
                              expires_in_days=expires_in_days, label=label)
        monkeypatch.setenv("SOFTHSM2_CONF", str(token.conf))
        return token

    return make


@pytest.fixture(autouse=True)
def no_module_left_loaded() -> Iterator[None]:
    """Each test starts with no PKCS#11 module loaded in this process: SoftHSM2 reads SOFTHSM2_CONF
    at C_Initialize, so a module a test forgot to close would show the next test an old token."""
    yield
    import pkcs11

    from card.pkcs11 import binding

    for module in list(binding._MODULES.values()):
        module.refs = 1
        binding.close_module(module)
    for path in list(pkcs11._loaded):  # a module a test loaded with the binding itself
        pkcs11.unload(path)
