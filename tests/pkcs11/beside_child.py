"""A process that runs one side-by-side renewal on the SoftHSM2 token of ``SOFTHSM2_CONF`` through
the fault shim, for the kill sweep (``python -m tests.pkcs11.beside_child SHIM LABEL PIN STATE CA``).
Exit 0: the run finished (every key final); 3: it stopped with an error (the journal is kept)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.pkcs11.beside_harness import context, open_token, run


def main(argv: list[str]) -> int:
    shim, label, pin, state, ca_dir, old_keys = argv
    token = open_token(Path(shim), label, pin)
    outcome = run(token, context(Path(state), Path(ca_dir), old_keys), "pkcs11-sweep")
    token.close()
    print(f"renewed={sorted(outcome.renewed)} ended={sorted(outcome.ended)} error={outcome.error!r}")
    return 0 if outcome.error is None else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
