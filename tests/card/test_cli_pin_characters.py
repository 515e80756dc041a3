"""Tester F-3: a PIN read by ``renew`` (from ``--pin-stdin`` or the prompt) that holds a character a
PIN cannot contain — an arrow key's ``ESC [ A``, a tab, a space, a NUL, a letter with the default
``ui.pin_characters`` — is refused before anything is sent: no try is spent. Was: 8 bytes passed the
6–8-byte check, VERIFY was sent and the card counted a wrong PIN."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from card.journal import AuditLog
from tui.cli import main


@pytest.fixture(autouse=True)
def private_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.delenv("CARDRENEW_CONFIG", raising=False)


def demo_audit(tmp_path: Path) -> list[dict[str, object]]:
    from card.demo import demo_state_dir

    return AuditLog(demo_state_dir() / "audit.log").read(None).entries


@pytest.mark.parametrize("typed", ["\x1b[A12345", "12345\t6", "123 456", "12345\x006", "abcdef", "１２３４５６"])
def test_renew_refuses_a_pin_with_other_characters_and_sends_nothing(typed: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", io.StringIO(typed + "\n"))
    code = main(["--demo", "renew", "--yes", "--pin-stdin", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 4 and out["error"]["code"] == "PINFORMAT", out
    assert "No try was used" in out["error"]["next_step"]
    assert [e for e in demo_audit(tmp_path) if e.get("outcome") == "wrong_pin"] == []  # no VERIFY went out


def test_a_crlf_line_is_still_the_pin(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", io.StringIO("123456\r\n"))
    assert main(["--demo", "renew", "--yes", "--pin-stdin", "--json"]) == 0


def test_undecodable_bytes_are_named_as_such() -> None:
    """The character check must not hide check_pin_format's words for bytes that are not text
    (tests/integration/test_secrets_pcscd.py expects them through pcscd)."""
    from card.secret import Secret
    from tui.cli.renew_pin import pin_characters_only

    with pytest.raises(Exception) as exc:
        pin_characters_only(Secret(b"12345\xe9"), "0123456789")
    assert "not valid text" in str(exc.value)
