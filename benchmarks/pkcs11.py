"""PKCS#11 function calls per renewal (issue 14), beside the APDU figures: a SoftHSM2 token with two
certificates (RSA-2048 and P-256, or two of one type) from the embedded CA, renewed side by side by
the real engine through the door (``card.backend.pkcs11_backend``), counted by
:attr:`card.pkcs11.Pkcs11Token.calls` (every PKCS#11 function the binding calls, C_FindObjects*
and C_GetAttributeValue included). Also the calls of reading the token for the Card tab (no PIN).

The token is made by ``tests/pkcs11/softhsm.py`` (``softhsm2-util`` + ``pkcs11-tool``) in a
directory of its own (``SOFTHSM2_CONF``), never the system token directory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from benchmarks.common import make_ca, settings_for

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")


def run_softhsm(workdir: Path, key_types: tuple[str, str] = ("RSA2048", "ECCP256")) -> dict[str, Any]:
    """One side-by-side renewal of a two-key SoftHSM2 token; the PKCS#11 calls of its parts."""
    import dataclasses

    from card.backend import pkcs11_backend
    from card.config_token import TokenSettings
    from card.secret import Secret
    from card.service import RenewalRequest
    from tests.pkcs11.softhsm import PIN, KeySpec, make_softhsm

    if not MODULE.is_file():
        return {"error": f"{MODULE} not installed (Debian softhsm2)"}
    workdir.mkdir(parents=True)
    ca_dir = workdir / "ca"
    ca = make_ca(ca_dir)
    keys = (KeySpec(b"\x01", "Authentication certificate", key_types[0], "9A"),
            KeySpec(b"\x02", "Signature certificate", key_types[1], "9C"))
    token = make_softhsm(workdir / "softhsm", ca, keys)
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(token.conf)
    try:
        settings = dataclasses.replace(settings_for(ca_dir, workdir / "state"),
                                       token=TokenSettings("pkcs11", MODULE, token.label))
        backend = pkcs11_backend(settings)
        try:
            backend.read_card().result()
            read_calls = backend.service.apdu_count
            t0 = time.perf_counter()
            result = backend.renew(RenewalRequest(Secret(PIN))).result()
            wall = time.perf_counter() - t0
            total = backend.service.apdu_count
        finally:
            backend.close()
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous
    if not result.ok:
        raise RuntimeError(f"renewal failed: {result.error or [r.error for r in result.slots]}")
    renewal_calls = total - read_calls
    return {
        "module": str(MODULE),
        "key_types": list(key_types),
        "keys": len(keys),
        "pkcs11_calls_read": read_calls,
        "pkcs11_calls_renewal": renewal_calls,
        "pkcs11_calls_per_key": round(renewal_calls / len(keys), 1),
        "wall_s": round(wall, 3),
    }
