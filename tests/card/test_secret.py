"""Secrets are a type (issue 12): a PIN, PUK, management key or SCEP challenge never shows through
repr/str/format/logging/pickle/JSON, compares in constant time, is wiped after use, and the card
layer refuses a plain ``str`` where a secret belongs."""

from __future__ import annotations

import copy
import json
import logging
import pickle
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from card.emulator.card import SoftPivCard
from card.emulator.create import profile_state
from card.errors import PinFormatError
from card.piv import DEFAULT_MANAGEMENT_KEY, PivSession, encode_pin
from card.secret import Secret, SecretWipedError, require_secret

REPO = Path(__file__).resolve().parents[2]
SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=200)
values = st.one_of(st.text(min_size=1, max_size=40), st.binary(min_size=1, max_size=40))


@SETTINGS
@given(values, st.text(max_size=6))
def test_no_rendering_shows_the_value(value: str | bytes, spec: str) -> None:
    secret = Secret(value)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % secret, "%r" % (secret,),
             repr([secret]), repr({"pin": secret}), repr((secret,))]
    try:
        shown.append(format(secret, spec))
    except ValueError:  # pragma: no cover - our __format__ accepts every spec
        pytest.fail("format() with a spec must not raise")
    for text in shown:
        assert re.sub(r"Secret\(\*\*\*\*\)", "", text) in ("", "[]", "{'pin': }", "(,)")


def test_log_records_show_no_value(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret("654321")
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").debug("pin=%s %r", secret, secret)
        logging.getLogger("test").debug("args %s", {"pin": secret})
    assert "654321" not in caplog.text and "Secret(****)" in caplog.text


@pytest.mark.parametrize("leak", [
    pickle.dumps, copy.copy, copy.deepcopy, json.dumps, bytes, hash,
    lambda s: pickle.dumps({"pin": s}), lambda s: json.dumps({"pin": s}),
])
def test_it_cannot_be_serialised_copied_or_hashed(leak) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError):
        leak(Secret("654321"))


def test_comparison_is_by_value_and_only_with_secrets() -> None:
    assert Secret("123456") == Secret(b"123456")
    assert Secret("123456") != Secret("123457")
    assert Secret("123456") != "123456"  # a plain string never equals a secret


def test_wipe_zeroes_the_bytes_and_a_wiped_secret_cannot_be_used() -> None:
    secret = Secret("654321")
    buffer = secret._value  # the one place the value lives
    secret.wipe()
    assert bytes(buffer) == b"" and secret.wiped and len(secret) == 0
    with pytest.raises(SecretWipedError):
        secret.reveal()
    with Secret(b"\x01\x02") as inner:
        kept = inner._value
        assert inner.reveal() == b"\x01\x02"
    assert bytes(kept) == b"" and inner.wiped


def test_undecodable_text_is_kept_but_is_not_a_valid_pin() -> None:
    undecodable = b"12345\xe9".decode("utf-8", "surrogateescape")
    secret = Secret(undecodable)
    assert not secret.is_text
    with pytest.raises(PinFormatError, match="not valid text"):
        encode_pin(secret)


@pytest.mark.parametrize("call", [
    lambda s: s.verify_pin("123456"),
    lambda s: s.change_pin("123456", "654321"),
    lambda s: s.reset_retry("12345678", "654321"),
    lambda s: s.authenticate(DEFAULT_MANAGEMENT_KEY),
])
def test_the_card_layer_refuses_a_plain_string_or_bytes_and_sends_nothing(call) -> None:  # type: ignore[no-untyped-def]
    card = SoftPivCard(profile_state())
    session = PivSession(card)
    session.select()
    before = session.protocol.apdus_sent
    with pytest.raises(TypeError, match="Secret"):
        call(session)
    assert session.protocol.apdus_sent == before
    assert card.state.pin_retries == 3 and card.state.puk_retries == 3


def test_require_secret_names_what_was_wrong() -> None:
    with pytest.raises(TypeError, match="the PUK must be a card.secret.Secret, not str"):
        require_secret("12345678", "PUK")


def test_no_secret_is_typed_as_a_plain_string_in_card_or_tui() -> None:
    """The repository's before-stop hook flags ``pin: str``; this keeps it true for every file."""
    pattern = re.compile(r"\b(pin|puk|new_pin|management_key|challenge|challenge_password)\s*:\s*str\b")
    offenders = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
                 for folder in ("card", "tui") for path in sorted((REPO / folder).rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_the_real_entry_point_disables_core_dumps_and_ptrace_before_anything_else(tmp_path: Path) -> None:
    """A core dump of a running ``renew`` held the PIN twice (issue 12 item 8). The process that
    ran ``cardrenew``'s main() reports on itself: RLIMIT_CORE (0, 0) and PR_GET_DUMPABLE 0."""
    import subprocess
    import sys

    probe = ("import sys\nfrom tui import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
             "from card.secret import process_dumpable\nimport resource\n"
             "print('DUMPABLE', process_dumpable())\nprint('CORE', *resource.getrlimit(resource.RLIMIT_CORE))\n"
             "print(open('/proc/self/limits').read())\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert "DUMPABLE 0" in out.stdout and "CORE 0 0" in out.stdout
    core_line = next(line for line in out.stdout.splitlines() if line.startswith("Max core file size"))
    assert core_line.split()[4:6] == ["0", "0"]


def test_harden_process_reports_what_it_did() -> None:
    import subprocess
    import sys

    probe = ("from card.secret import harden_process, process_dumpable\n"
             "print(process_dumpable()); print(harden_process()); print(process_dumpable())")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.split("\n")[:3] == ["1", "{'core_limit': True, 'not_dumpable': True}", "0"]


@pytest.mark.parametrize("pin, ok", [("123456", True), ("000000", False)])
def test_renew_wipes_the_pin_whatever_the_outcome(ca, tmp_path: Path, pin: str, ok: bool) -> None:  # type: ignore[no-untyped-def]
    from card.config import Settings
    from card.emulator.create import create_card_state
    from card.errors import InvalidPinError
    from card.journal import AuditLog, JournalStore
    from card.renewal import RenewalContext, renew

    card = SoftPivCard(create_card_state(ca))
    ctx = RenewalContext(Settings(), ca, JournalStore(tmp_path / "state"), AuditLog(tmp_path / "state" / "audit.log"))
    secret = Secret(pin)
    if ok:
        assert renew(PivSession(card), ctx, secret).ok
    else:
        with pytest.raises(InvalidPinError):
            renew(PivSession(card), ctx, secret)
    assert secret.wiped


@SETTINGS
@given(st.binary(max_size=24))
def test_utf8_validity_is_judged_like_python_without_decoding(raw: bytes) -> None:
    try:
        raw.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert Secret(raw).is_text is valid


@SETTINGS
@given(st.text(max_size=12))
def test_utf8_validity_of_every_text(text: str) -> None:
    assert Secret(text.encode("utf-8", "surrogatepass")).is_text is (not any(0xD800 <= ord(c) <= 0xDFFF for c in text))


@pytest.mark.parametrize("fed, expected", [(b"123456\n", b"123456"), (b"123456\r\nrest\n", b"123456"),
                                           (b"654321", b"654321"), (b"\n", b""), (b"12345\xe9\n", b"12345\xe9")])
def test_a_secret_line_is_read_from_a_descriptor(fed: bytes, expected: bytes) -> None:
    import os

    from card.secret import read_secret_line

    r, w = os.pipe()
    os.write(w, fed)
    os.close(w)
    try:
        secret = read_secret_line(r)
    finally:
        os.close(r)
    assert secret.reveal() == expected
    assert secret.is_text is (b"\xe9" not in expected)
