"""The SCEP RA hook (``issuer.challenge_command``): a deployment's program that authorises a renewal
while the old key still exists, against a proof of possession of that key, and prints a one-time
challenge password for the request (see ``reference/enrollment-protocols.md`` §4).

The hook runs in its own process group under the request deadline and the cancellation token;
it and its children are killed when either passes. Its stdout (the challenge) is never logged.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from card.certificates import fingerprint
from card.config_errors import ConfigError
from card.enrollment import http
from card.enrollment.base import IssuerRejected, RaRejected, RaUnavailable, Signer
from card.enrollment.scep_settings import ScepIssuerSettings
from card.errors import OperationCancelled
from card.secret import Secret

HOOK_STDOUT_CAP = 64 * 1024
"""Bytes of RA hook stdout accepted; more is a refusal (RA-REFUSED), the hook is ended."""
HOOK_STDERR_KEEP = 4 * 1024
"""Bytes of RA hook stderr kept (the last ones: the reason is the last line); the rest is discarded."""
HOOK_EXIT_GRACE_S = 0.5
"""Seconds the pipes are still read after the hook itself exited (a leftover child may hold them)."""
HOOK_POLL_S = 0.05
"""Seconds between checks of the hook's exit, the deadline and cancellation."""


def ra_proof_message(slot: str, transaction_id: str, certificate_fingerprint: str, nonce_hex: str,
                     signed_at: str) -> bytes:
    """The bytes the old key signs for the RA hook: a fixed label and ``key=value`` lines (UTF-8).

    An RA checks the signature with the old certificate's key, that ``certificate`` is the SHA-256
    of that certificate, that ``time`` is recent, and that it has not seen the nonce before.
    """
    return (f"cardrenew SCEP renewal authorisation v1\nslot={slot}\ntransaction={transaction_id}\n"
            f"certificate={certificate_fingerprint}\nnonce={nonce_hex}\ntime={signed_at}\n").encode()


def ask_ra(settings: ScepIssuerSettings, cancel: threading.Event, slot: str, old_certificate: x509.Certificate,
           transaction_id: str, sign_with_old_key: Signer, *, dry_run: bool = False) -> Secret | None:
    """Run the RA hook (``settings.challenge_command``) while the old key exists; return its
    challenge. ``cancel`` and ``settings.timeout_s`` bound the run (:func:`run_hook`).

    The hook's argv may use ``{slot}``, ``{transaction_id}``, ``{fingerprint}`` (SHA-256 of the old
    certificate, hex) and ``{serial}`` (hex). Its stdin is one JSON object, the proof of possession
    of the old key (see :func:`ra_proof_message`)::

        {"version": 1, "slot": "9A", "transaction_id": "…", "nonce": "<hex, 32 bytes>",
         "signed_at": "<ISO 8601 UTC>", "old_certificate": "<PEM>",
         "signed_message": "<base64>", "signature": "<base64>", "hash": "SHA-256"}

    The signature is the old key's (PKCS#1 v1.5 for RSA, DER ECDSA for EC) over ``signed_message``.
    The hook prints a one-time challenge on its first stdout line and exits 0. Exit 75
    (EX_TEMPFAIL) means the RA is unavailable now; any other exit is a refusal whose reason is the
    hook's last stderr line (shown to the user: it must not hold a secret). stdout is never logged.

    **Dry mode** (``dry_run=True``: ``cardrenew renew --check``, only with
    ``issuer.challenge_dry_run = true``): the JSON also holds ``"dry_run": true``. The hook then
    makes every check it makes for a real request (the proof, the certificate, its own policy) but
    must not hand out, record or spend a challenge: it prints nothing on stdout and exits 0 when it
    would grant, 75 when the RA is unavailable, anything else (reason on stderr) when it would
    refuse. A hook that prints a challenge in dry mode does not honour it: that is a refusal
    (RA-REFUSED), and the printed value is dropped unread.

    Returns:
        The one-time challenge; None in dry mode (the RA would grant).

    Raises:
        RaRejected: the RA refused (the hook exited non-zero); in dry mode also a hook that printed
            a challenge.
        IssuerRejected: the hook printed no challenge, or one that is not 1–255 printable characters.
        RaUnavailable: the hook timed out, was ended by a signal, or exited 75.
        ConfigError: the hook cannot be run.
    """
    assert settings.challenge_command
    fp = fingerprint(old_certificate)
    values = {"slot": slot, "transaction_id": transaction_id, "fingerprint": fp,
              "serial": f"{old_certificate.serial_number:X}"}
    argv = [part.format_map(values) for part in settings.challenge_command]
    nonce = os.urandom(32).hex()
    signed_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    message = ra_proof_message(slot, transaction_id, fp, nonce, signed_at)
    proof = {
        "version": 1, "slot": slot, "transaction_id": transaction_id, "nonce": nonce, "signed_at": signed_at,
        "old_certificate": old_certificate.public_bytes(serialization.Encoding.PEM).decode(),
        "signed_message": base64.b64encode(message).decode(),
        "signature": base64.b64encode(sign_with_old_key(message)).decode(), "hash": "SHA-256",
    }
    if dry_run:
        proof["dry_run"] = True
    returncode, stdout, stderr = run_hook(argv, json.dumps(proof), settings.timeout_s, cancel)
    said = "".join(ch for ch in next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
                   if ch.isprintable())[:200]  # shown to the user: no terminal control sequences
    if returncode == 75:
        raise RaUnavailable(f"the RA is unavailable for slot {slot}" + (f": {said}" if said else ""))
    if returncode < 0:
        raise RaUnavailable(f"the RA hook {argv[0]!r} was ended by signal {-returncode}" +
                            (f": {said}" if said else ""))
    if returncode != 0:
        raise RaRejected(f"the RA refused the renewal of slot {slot}" + (f": {said}" if said else
                         f" (its hook exited {returncode})") + "; nothing was changed")
    challenge = stdout.split("\n", 1)[0].removesuffix("\r").strip(" \t")
    if dry_run:
        if stdout.strip():
            raise RaRejected(f"the RA hook printed a challenge in a dry run for slot {slot}: it does not honour "
                             "\"dry_run\" (a one-time challenge may have been handed out); the value was dropped")
        return None
    if not challenge:
        raise IssuerRejected(f"the RA hook gave no challenge for slot {slot}; nothing was changed")
    if len(challenge) > 255 or not challenge.isprintable():  # PKCS#9 challengePassword: ub 255
        raise IssuerRejected(f"the RA hook gave an unusable challenge for slot {slot} (more than 255 characters, "
                             "or control characters); nothing was changed")
    return Secret(challenge)


def run_hook(argv: list[str], stdin: str, timeout_s: float, cancel: threading.Event) -> tuple[int, str, str]:
    """Run the RA hook in its own process group; returns (exit status, stdout, stderr),
    undecodable bytes replaced.

    The pipes are read without blocking, under ``timeout_s`` and ``cancel``: when either passes
    while the hook runs, the whole process group (the hook and its children) is killed at once
    (SIGKILL) and reading stops at once, even if a detached grandchild (``setsid``) still holds the
    pipes. Once the hook itself has exited, reading stops at EOF or after
    :data:`HOOK_EXIT_GRACE_S`; what is left of its process group is then killed. At most
    :data:`HOOK_STDOUT_CAP` bytes of stdout are accepted (the challenge is one line); only the
    last :data:`HOOK_STDERR_KEEP` bytes of stderr are kept (the reason is its last line).

    Raises:
        ConfigError: the hook cannot be run (missing, not executable).
        RaUnavailable: it did not finish within ``timeout_s`` (RA-DOWN, retried).
        RaRejected: it printed more than :data:`HOOK_STDOUT_CAP` bytes on stdout (RA-REFUSED, final).
        OperationCancelled: ``cancel`` was set while it ran.
    """
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)  # bytes: no newline translation of the challenge
    except OSError as exc:
        raise ConfigError(f"issuer.challenge_command: {argv[0]!r} cannot be run ({exc.strerror or exc})") from exc
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    exchange = _HookExchange(proc, memoryview(stdin.encode()), http.Deadline(timeout_s, cancel))
    try:
        exchange.run()
    finally:
        # Never leave the hook or its children running (the leader's pgid stays reserved while
        # any member of its group lives, so this cannot hit another program's group).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                pipe.close()
    if exchange.fired == "cancelled":
        raise OperationCancelled(f"stopped while the RA hook {argv[0]!r} ran; it was ended")
    if exchange.fired == "deadline":
        raise RaUnavailable(f"the RA hook {argv[0]!r} did not answer within {timeout_s:g} s")
    if exchange.overflow:
        raise RaRejected(f"the RA hook {argv[0]!r} printed more than {HOOK_STDOUT_CAP // 1024} KiB on stdout "
                         "(a challenge is one line); it was ended and nothing was changed")
    return proc.returncode, exchange.out.decode("utf-8", "replace"), exchange.err.decode("utf-8", "replace")


@dataclass
class _HookExchange:
    """The hook's pipes, pumped without blocking: ``stdin`` written, stdout and stderr read, until
    the hook is done, the deadline or cancellation fires (``fired``), or stdout overflows."""

    proc: subprocess.Popen[bytes]
    pending: memoryview
    deadline: http.Deadline
    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)
    fired: str | None = None
    overflow: bool = False

    def run(self) -> None:
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        exited_at: float | None = None
        sel = selectors.DefaultSelector()
        try:
            for pipe in (proc.stdout, proc.stderr):
                os.set_blocking(pipe.fileno(), False)
                sel.register(pipe, selectors.EVENT_READ)
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE)
            while sel.get_map():
                if proc.poll() is not None:  # the hook itself has exited: its answer is complete
                    now = time.monotonic()
                    exited_at = now if exited_at is None else exited_at
                    if (now - exited_at > HOOK_EXIT_GRACE_S or self.deadline.remaining() <= 0
                            or self.deadline.cancel.is_set()):
                        break  # a leftover child holds the pipes: stop reading
                elif self.deadline.cancel.is_set():
                    self.fired = "cancelled"
                    break
                elif self.deadline.remaining() <= 0:
                    self.fired = "deadline"
                    break
                for key, _events in sel.select(max(0.0, min(HOOK_POLL_S, self.deadline.remaining()))):
                    self._pump(sel, key)
                if self.overflow:
                    break
        finally:
            sel.close()

    def _pump(self, sel: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
        """Write the next piece of stdin, or read what a pipe has (EOF unregisters it)."""
        proc, pipe = self.proc, key.fileobj
        assert proc.stdin is not None
        if pipe is proc.stdin:
            try:
                self.pending = self.pending[os.write(proc.stdin.fileno(), self.pending[:65536]):]
            except BlockingIOError:
                return
            except OSError:  # BrokenPipeError: the hook does not read its stdin
                self.pending = self.pending[:0]
            if not self.pending:
                sel.unregister(pipe)
                proc.stdin.close()
            return
        try:
            chunk = os.read(key.fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            sel.unregister(pipe)
        elif pipe is proc.stdout:
            self.out += chunk
            self.overflow = len(self.out) > HOOK_STDOUT_CAP
        else:
            self.err += chunk
            del self.err[:-HOOK_STDERR_KEEP]
