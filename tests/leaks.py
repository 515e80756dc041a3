"""Does a trace, a log or a file show a secret? One check for the secret-leak tests.

A secret counts as shown when a run of ``window`` of its bytes appears byte-aligned as hex (spaced
``31 32 33 34`` or joined ``31323334``, either case), or raw in binary data; a printable secret (a
PIN) counts only whole, raw or in hex, so that random hex such as ``CB B1 23 4B``, base64 in a PEM
block, or a certificate's ASCII time ``261203232345Z`` (hex ``... 32 33 34 35 ...``) is never taken
for the digits ``2345`` of the PIN ``123456``: CI failed on exactly that at 23:45 UTC."""

from __future__ import annotations

import re

_SPACED = re.compile(rb"(?<![0-9A-Fa-f])[0-9A-Fa-f]{2}(?![0-9A-Fa-f])")
_JOINED = re.compile(rb"[0-9A-Fa-f]{8,}")


def hex_spelled(blob: bytes) -> list[bytes]:
    """The byte strings each line of ``blob`` spells in hex, read byte-aligned."""
    out = []
    for line in blob.splitlines():
        out.append(bytes.fromhex(b"".join(_SPACED.findall(line)).decode()))
        out += [bytes.fromhex(run.decode()) for run in _JOINED.findall(line) if len(run) % 2 == 0]
    return out


def leaks(blob: bytes | str, secret: bytes, window: int = 4) -> list[str]:
    """What of ``secret`` ``blob`` shows (empty: nothing)."""
    data = blob.encode("utf-8", "surrogateescape") if isinstance(blob, str) else blob
    printable = secret.isascii() and secret.decode().isprintable()
    if printable:
        window = len(secret)
    runs = [secret[i : i + window] for i in range(len(secret) - window + 1)]
    spelled = hex_spelled(data)
    found = [run.hex(" ") for run in runs if any(run in chunk for chunk in spelled)]
    if printable:
        found += [secret.decode()] if secret in data else []
    else:
        found += [f"raw {run.hex(' ')}" for run in runs if run in data]
    return found
