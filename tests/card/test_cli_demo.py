"""``--demo`` with ``status`` and ``renew``: the demo's virtual card and embedded CA, as with the
TUI (issue 12 point 9: ``--demo status`` read PC/SC instead and said there was no card)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tui.cli import EXIT_CA, EXIT_CARD, EXIT_NOT_DUE, EXIT_OK, EXIT_USAGE, main


@pytest.fixture(autouse=True)
def private_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo CA lives under the XDG data directory: keep it out of the developer's home."""
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.delenv("CARDRENEW_CONFIG", raising=False)
    monkeypatch.setenv("PCSCLITE_CSOCK_NAME", str(tmp_path / "no-pcscd"))  # never the machine's pcscd


@pytest.mark.parametrize("argv", [["--demo", "status", "--json"], ["status", "--demo", "--json"]])
def test_demo_status_reads_the_demo_card(argv: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(argv) == EXIT_NOT_DUE  # the demo card's certificates are due in 30 days
    out = json.loads(capsys.readouterr().out)
    assert out["reader"] == "Virtual card (demo)" and out["holder"] == "Alex Example"
    assert [s["state"] for s in out["slots"]] == ["due", "due"]


def test_demo_renew_renews_the_demo_card(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", io.StringIO("123456\n"))
    assert main(["--demo", "renew", "--yes", "--pin-stdin", "--json"]) == EXIT_OK
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["outcome"] == "renewed" and all(s["renewed"] for s in out["slots"])
    assert "demo" in captured.err.lower()  # says it used the demo card, which is not kept


def test_demo_fault_ca_refuses_applies_to_renew(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", io.StringIO("123456\n"))
    assert main(["--demo", "--demo-fault", "ca-refuses", "renew", "--yes", "--pin-stdin", "--json"]) == EXIT_CA
    out = json.loads(capsys.readouterr().out)
    assert out["error"]["reference"]


@pytest.mark.parametrize("argv", [["--demo", "--reader", "Some reader", "status"],
                                  ["--demo", "ca", "init", "somewhere"]])
def test_demo_with_what_it_cannot_apply_to_is_a_usage_error(argv: list[str], tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert main(argv) == EXIT_USAGE
    assert "--demo" in capsys.readouterr().err
    assert not (tmp_path / "somewhere").exists()


@pytest.mark.parametrize("error", ["IssuerUnavailable", "CertificateMismatchError"])
@pytest.mark.parametrize("json_out", [False, True], ids=["text", "json"])
def test_the_cli_names_its_own_command_as_the_next_step(error: str, json_out: bool,  # type: ignore[no-untyped-def]
                                                        monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Break-it: renew said "Try again later from the Card tab" (the TUI's way) to a CLI user."""
    from card.enrollment import base
    from card import issued_checks
    from card.enrollment.local import LocalCA

    kind = getattr(base, error, None) or getattr(issued_checks, error)

    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise kind("the CA cannot be used now (test)")
    monkeypatch.setattr(LocalCA, "authorize_renewal", fail)
    monkeypatch.setattr("sys.stdin", io.StringIO("123456\n"))
    main(["--demo", "renew", "--yes", "--pin-stdin"] + (["--json"] if json_out else []))
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "Card tab" not in shown
    if json_out:
        out = json.loads(captured.out)
        next_step = out.get("next_step") or out["error"]["next_step"]
    else:
        next_step = next(line for line in shown.splitlines() if line.startswith("Next step:"))
    assert "cardrenew renew" in next_step, shown


def test_serve_refuses_to_start_without_a_usable_configuration(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """A new user's `cardrenew serve --kiosk` with no configuration printed 'Serving …' and every
    browser session then died at once; it now exits 2 with the TUI's configuration error."""
    import tui.serve

    served: list[object] = []
    monkeypatch.setattr(tui.serve, "serve", lambda *a, **k: served.append(a) or 0)
    assert main(["serve", "--kiosk", "--port", "8765"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Configuration error" in err and "issuer.directory is needed" in err
    assert not served


def test_demo_with_a_subcommand_without_a_demo_names_that_subcommand_not_the_reader(tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
                                                                                   capsys) -> None:
    """Was: `--demo ca init DIR` said "… and not with --reader" and "Leave out --demo, or --reader."
    though no --reader was given."""
    monkeypatch.chdir(tmp_path)
    assert main(["--demo", "ca", "init", "somewhere"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--reader" not in err and "ca" in err and "Leave out --demo" in err


def test_demo_with_a_reader_still_names_the_reader(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["--demo", "--reader", "Some reader", "status"]) == EXIT_USAGE
    assert "--reader" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--demo-fault", "pull-card", "status"], ["status", "--demo-fault", "ca-refuses"],
                                  ["renew", "--demo-fault", "pull-card", "--yes", "--pin-stdin"],
                                  ["serve", "--demo-fault", "ca-refuses"]])
def test_a_demo_fault_without_demo_is_a_usage_error(argv: list[str], monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Was: silently ignored (status and renew went to PC/SC and said there was no reader, exit 3;
    serve served the real reader). Nothing is read from stdin, no PIN is asked."""
    monkeypatch.setattr("sys.stdin", io.StringIO("123456\n"))
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--demo-fault" in err and "--demo" in err
    assert __import__("sys").stdin.read() == "123456\n"


def test_demo_fault_none_without_demo_is_no_fault(tmp_path: Path) -> None:
    """``--demo-fault none`` asks for no fault: nothing to refuse; status then reads PC/SC and finds no
    pcscd (exit 3). In a child process: libpcsclite keeps the first socket path it is given for the
    life of the process, so an in-process call here broke every later pcscd test (50 failed)."""
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=str(tmp_path / "no-pcscd"))
    out = subprocess.run([sys.executable, "-m", "tui", "--demo-fault", "none", "status"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == EXIT_CARD, out.stderr
    assert "--demo-fault" not in out.stderr
