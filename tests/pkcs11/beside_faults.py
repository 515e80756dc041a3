"""Fault injection at the PKCS#11 boundary for the side-by-side tests: builds ``faultshim.c`` (a
forwarding module, see its header) and gives the environment that puts it in front of SoftHSM2."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.pkcs11.softhsm import MODULE

SOURCE = Path(__file__).with_name("faultshim.c")
LOG = "CARDRENEW_P11_LOG"
FAULT = "CARDRENEW_P11_FAULT"
REAL = "CARDRENEW_P11_REAL"
MODES = ("error-before", "error-after")
KILLS = ("kill-before", "kill-after")


def build_shim(directory: Path) -> Path:
    """Compile the shim into ``directory`` (gcc, a fraction of a second)."""
    out = directory / "faultshim.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-Wall", "-o", str(out), str(SOURCE), "-ldl"], check=True,
                   capture_output=True, timeout=120)
    return out


def shim_env(log: Path | None = None, fault: str | None = None) -> dict[str, str]:
    """The variables that make the shim forward to SoftHSM2, log and inject ``fault`` ("<mode>:<n>")."""
    env = {REAL: str(MODULE)}
    if log is not None:
        env[LOG] = str(log)
    if fault is not None:
        env[FAULT] = fault
    return env
