"""The command line's contract without a card: options before or after the subcommand,
configuration errors as exit 2 with the key named, PIN input problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from card.config import ConfigError, load_settings
from card.errors import PinFormatError
from card.piv import encode_pin
from card.secret import Secret
from tui.cli import EXIT_USAGE, main
from tui.cli.parser import build_parser


def test_options_before_the_subcommand_are_kept() -> None:
    args = build_parser().parse_args(["--reader", "Virtual PCD 00 01", "--config", "c.toml", "status", "--json"])
    assert (args.reader, args.config, args.command) == ("Virtual PCD 00 01", "c.toml", "status")
    args = build_parser().parse_args(["status", "--reader", "R"])
    assert args.reader == "R" and args.config is None


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_missing_config_file_is_an_error_wherever_it_is_named(where: str, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = ["--config", "/nonexistent.toml", "status"] if where == "before" else ["status", "--config", "/nonexistent.toml"]
    assert main(argv) == EXIT_USAGE
    assert "configuration file not found: /nonexistent.toml" in capsys.readouterr().err


@pytest.mark.parametrize("content,message", [
    (b"\xff\xfe garbage", "not UTF-8"),
    (b"renewal = 5", "[renewal] must be a table"),
    (b"[renewal]\nslots = \"9A\"", "renewal.slots must be a list"),
    (b"[renewal]\nwindow_days = \"90\"", "renewal.window_days must be a whole number"),
    (b"[renewal]\nwindow_days = true", "renewal.window_days must be a whole number"),
    (b"[issuer]\ntype = \"est\"", "issuer.type 'est'"),
    (b"[management_key]\nsource = \"guess\"", "management_key.source 'guess'"),
])
def test_bad_configuration_names_the_problem(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert message in str(exc.value)


def test_issuer_directory_without_a_ca_is_a_configuration_error(tmp_path: Path) -> None:
    from card.enrollment.registry import make_issuer

    path = tmp_path / "config.toml"
    path.write_text('[issuer]\ntype = "local"\ndirectory = "nowhere"\n')
    with pytest.raises(ConfigError) as exc:
        make_issuer(load_settings(path))
    assert "holds no CA" in str(exc.value) and "cardrenew ca init" in str(exc.value)


def test_pin_that_is_not_text_is_refused_without_a_try() -> None:
    undecodable = b"12345\xe9".decode("utf-8", "surrogateescape")  # what a pipe gives for a Latin-1 byte
    with pytest.raises(PinFormatError) as exc:
        encode_pin(Secret(undecodable))
    assert "No try was used" in exc.value.next_step
    with pytest.raises(PinFormatError) as exc:
        encode_pin(Secret("1234567é"))  # 8 characters, 9 bytes (F07)
    assert "9 bytes" in str(exc.value)


@pytest.mark.parametrize("argv,level", [(["renew", "-vv"], "TRAFFIC"), (["-v", "renew"], "INFO"),
                                        (["renew", "-v"], "INFO"), (["-v", "status", "-v"], "TRAFFIC"),
                                        (["audit", "--verbose"], "INFO")])
def test_verbosity_works_before_and_after_the_subcommand(argv: list[str], level: str, capsys,  # type: ignore[no-untyped-def]
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Break-it: `renew -vv` was a usage error (exit 2); -v only worked before the subcommand."""
    import logging
    from card.apdu import TRAFFIC
    levels: list[int] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: levels.append(kw["level"]))
    assert main(argv + ["--config", "/nonexistent.toml"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unrecognized arguments" not in err and "configuration file not found: /nonexistent.toml" in err
    assert levels == [TRAFFIC if level == "TRAFFIC" else logging.INFO]
