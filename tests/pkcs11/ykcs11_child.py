"""Pkcs11Token on Yubico's libykcs11, run in a child process on the ykcs11 tests' own pcscd
(``python -m tests.pkcs11.ykcs11_child SCENARIO …``; PCSCLITE_CSOCK_NAME is set for the child
only: a PC/SC client keeps its socket for the life of its process). Prints one JSON object."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from card.enrollment.local import LocalCA
from card.errors import CardError
from card.pkcs11 import Pkcs11Token
from card.piv.model import KeyType, Slot
from card.secret import Secret
from card.token import KeyRef
from tests.pkcs11.judge import verifies
from tests.pkcs11.tokens import issue_der
from tests.ykcs11.pcscd import PIN, SO_PIN, YKCS11


def _error(exc: CardError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc), "left": getattr(exc, "attempts_remaining", None),
            "few_left": getattr(exc, "few_left", None)}


def pins() -> dict[str, Any]:
    """Three wrong PINs, then the right one: what the user is told each time, and the tries left."""
    out: dict[str, Any] = {"steps": []}
    with Pkcs11Token(YKCS11) as token:
        token.start()
        out["before"] = token.pin_tries_left()
        for pin in ("654321", "654321", "654321", PIN):
            try:
                token.log_in(Secret(pin))
                step: dict[str, Any] = {"type": "ok"}
            except CardError as exc:
                step = _error(exc)
            step["tries_left"] = token.pin_tries_left()
            out["steps"].append(step)
    return out


def renew(key_type_name: str, ca_dir: str) -> dict[str, Any]:
    """The PIV-order renewal's token half for 9A: log in, SO, GENERATE, certificate, test signature;
    and the 9C signature (CKA_ALWAYS_AUTHENTICATE) under the SO session."""
    key_type = KeyType[key_type_name]
    out: dict[str, Any] = {}
    with Pkcs11Token(YKCS11, admin_key=Secret(bytes.fromhex(SO_PIN))) as token:
        out["key_types"] = sorted(k.name for k in token.start() or set())
        out["info"] = [token.info.manufacturer, token.info.side_by_side]
        certs = token.certificates()
        out["certificates"] = [[c.ref.hex, c.ref.slot.hex if c.ref.slot else None, c.ref.label] for c in certs]
        nine_c = next(c for c in certs if c.ref.slot is Slot.SIGNATURE)
        token.log_in(Secret(PIN))
        token.log_in_admin()
        assert nine_c.certificate is not None
        signature = token.sign(nine_c.ref, KeyType.of(nine_c.certificate.public_key()), b"9C under SO")
        out["9c_verifies"] = verifies(nine_c.certificate, signature, b"9C under SO")
        ref = KeyRef(b"\x01", "X.509 Certificate for PIV Authentication", Slot.AUTHENTICATION)
        before = token.calls
        public = token.generate_key(ref, key_type)
        der = issue_der(LocalCA(Path(ca_dir)), public)
        token.write_certificate(ref, der, "X.509 Certificate for PIV Authentication")
        written = token.certificate(ref)
        signature = token.sign(ref, key_type, b"test signature")
        out["calls_generate_write_sign"] = token.calls - before
        out["written"] = written.raw == der
        assert written.certificate is not None
        out["9a_verifies"] = verifies(written.certificate, signature, b"test signature")
        try:
            token.delete(ref)
        except CardError as exc:
            out["delete"] = _error(exc)
        out["cert_der"] = written.certificate.public_bytes(Encoding.DER).hex()
    return out


if __name__ == "__main__":
    scenario, *args = sys.argv[1:]
    print(json.dumps(pins() if scenario == "pins" else renew(*args)))
