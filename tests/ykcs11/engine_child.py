"""Child process: one renewal by the engine on a :class:`card.pkcs11.token.Pkcs11Token`, assembled
from a configuration as the program does (``[card] module``, the management key as the token's
admin key, the configured issuer, journal store and audit log), with the PIN from stdin. Prints
one JSON object: the read (card id, each slot's state), then the result per slot or the error
raised, in the words the user gets (the error's title, message and next step).

Run by tests/ykcs11 in a child process on the ykcs11 pcscd (PCSCLITE_CSOCK_NAME) until
``cardrenew renew`` assembles a PKCS#11 token (the assembly's owner lands that).

Usage: python -m tests.ykcs11.engine_child CONFIG  (PIN on stdin)
"""

from __future__ import annotations

import json
import sys
from typing import Any

from card.backend import build_issuer
from card.config import load_settings
from card.errors import CardError
from card.journal import AuditLog, JournalStore
from card.pkcs11.token import Pkcs11Token
from card.renewal import RenewalContext, UpdateCheck, read_card, renew, update_check
from card.secret import Secret


def _words(error: BaseException) -> dict[str, Any]:
    return {"type": type(error).__name__, "title": getattr(error, "title", ""), "message": str(error),
            "next_step": getattr(error, "next_step", ""), "code": getattr(error, "code", "")}


def main(config: str) -> dict[str, Any]:
    settings = load_settings(config)
    audit = AuditLog(settings.state_dir / "audit.log")
    journals = JournalStore(settings.state_dir, audit)
    pin = Secret(sys.stdin.readline().rstrip("\n").encode())
    assert settings.token.module is not None
    out: dict[str, Any] = {}
    try:
        token = Pkcs11Token(settings.token.module, settings.token.token_label, settings.token.token_serial,
                            admin_key=settings.management_key())
    except CardError as exc:
        return {"raised": _words(exc)}
    try:
        summary = read_card(token, settings, journals=journals)
        out["card_id"] = summary.card_id
        out["update"] = update_check(summary).name
        out["read"] = {s.setting.slot.hex: s.state.name for s in summary.slots}
        if update_check(summary) not in (UpdateCheck.AVAILABLE, UpdateCheck.RESUME):
            return out
        ctx = RenewalContext(settings, build_issuer(settings), journals, audit)
        result = renew(token, ctx, pin, summary=summary)
        out["outcome"] = "renewed" if result.ok else "failed"
        out["reference"] = result.reference
        out["journal_kept"] = result.journal_kept
        out["error"] = _words(result.error) if result.error else None
        out["slots"] = [{"slot": r.slot.hex, "renewed": r.renewed,
                         "new_serial": f"{r.new_certificate.serial_number:X}" if r.new_certificate else None,
                         "error": _words(r.error) if r.error else None} for r in result.slots]
    except CardError as exc:
        out["raised"] = _words(exc)
    finally:
        pin.wipe()
        out["calls"] = token.calls
        token.close()
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
