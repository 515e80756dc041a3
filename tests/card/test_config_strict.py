"""The configuration is strict and total (issue 11 item 6, issue 12 point 9): an unknown key in any
table, a wrong type, a non-finite timeout or a file nested too deeply is a configuration error
(exit 2) whose message names the file and the key; every configuration the README documents loads."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from card.config import SCHEMA, ConfigError, UsageError, load_settings
from tui.cli import EXIT_USAGE, main

README = Path(__file__).resolve().parents[2] / "README.md"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    return exc.value


@pytest.mark.parametrize("text,key,hint", [
    ('[issuer]\nurll = "http://x"\n', "issuer.urll", "url"),
    ('[renewal]\nwindow_day = 30\n', "renewal.window_day", "window_days"),
    ('[ui]\nkiosk_mode = true\n', "ui.kiosk_mode", "kiosk"),
    ('[management_key]\nsorce = "default"\n', "management_key.sorce", "source"),
    ('[card]\nmax_cert_bytes = 3052\n', "card.max_cert_bytes", None),
    ('[issuers]\ntype = "local"\n', "issuers", "issuer"),
    ('readr = "Virtual PCD 00 00"\n', "readr", "reader"),
    ('[renewal]\nslots = [{ slot = "9A", lable = "PIV Authentication" }]\n', "renewal.slots[0].lable", "label"),
    ('[issuer.extra]\nx = 1\n', "issuer.extra", None),
])
def test_an_unknown_key_names_the_file_and_the_key(tmp_path: Path, text: str, key: str, hint: str | None) -> None:
    """Was: silently ignored (a misspelt `urll` left the built-in default in force)."""
    path = write(tmp_path, text)
    message = str(config_error(path))
    assert message.startswith(f"{path}: unknown key '{key}'")
    assert (f"(did you mean '{hint}'?)" in message) == (hint is not None), message


def test_the_cli_names_the_file_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[issuer]\nurll = "http://x"\n')
    assert main(["status", "--config", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"Configuration error: {path}: unknown key 'issuer.urll' (did you mean 'url'?)" in err
    assert f"Next step: Fix the configuration file {path}, or ask your administrator." in err


@pytest.mark.parametrize("nested", ["a = " + "[" * 5000 + "]" * 5000, "a = " + "{b = " * 3000 + "1" + "}" * 3000,
                                    "a = " + "[" * 100000])
def test_deeply_nested_toml_is_a_configuration_error_naming_the_file(tmp_path: Path, nested: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Was: RecursionError, exit 1, file not named."""
    path = write(tmp_path, nested + "\n")
    assert main(["status", "--json", "--config", str(path)]) == EXIT_USAGE
    out = capsys.readouterr().out
    assert '"code": "CONFIG"' in out and str(path) in out and "INTERNAL" not in out


def test_a_huge_file_is_refused_unread(tmp_path: Path) -> None:
    path = write(tmp_path, "# " + "x" * (1 << 21) + "\n")
    assert "larger than 1024 KiB" in str(config_error(path))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan", "-1", "0", "0.0", "1e9", "true", '"15"'])
def test_a_timeout_that_is_not_a_finite_positive_number_is_refused(tmp_path: Path, value: str) -> None:
    """Was: `timeout_s = nan` accepted (every wait then ended at once, or never)."""
    message = str(config_error(write(tmp_path, f"[issuer]\ntimeout_s = {value}\n")))
    assert "issuer.timeout_s must be" in message


@pytest.mark.parametrize("value,seconds", [("15", 15.0), ("0.5", 0.5), ("3600", 3600.0)])
def test_a_sane_timeout_loads(tmp_path: Path, value: str, seconds: float) -> None:
    load_settings(write(tmp_path, f"[issuer]\ntimeout_s = {value}\n"))  # beside the (default) local type's keys
    assert load_settings(write(tmp_path, f'[issuer]\ntype = "scep"\ntimeout_s = {value}\n')).issuer.timeout_s == seconds


# a TOML literal of each kind, and which Python types it gives
LITERALS = {"an integer": ("7", int), "a float": ("7.5", float), "a string": ('"x"', str), "a boolean": ("true", bool),
            "a list": ("[1]", list), "a table": ("{ a = 1 }", dict), "a date": ("2026-01-01", None)}


@pytest.mark.parametrize("table,key", [(t, k) for t, keys in SCHEMA.items() for k in keys])
def test_a_value_of_the_wrong_type_names_the_key(tmp_path: Path, table: str, key: str) -> None:
    kinds = SCHEMA[table][key]
    for words, (literal, kind) in LITERALS.items():
        takes = kind is not None and kind in kinds or (kind is int and float in kinds)
        if takes:
            continue
        text = (f"[{table}]\n" if table else "") + f"{key} = {literal}\n"
        message = str(config_error(write(tmp_path, text)))
        where = f"{table}.{key}" if table else key
        assert f"{where} must be" in message and message.startswith(str(tmp_path)), (words, message)


@pytest.mark.parametrize("entry,message", [
    ('"9A"', "renewal.slots[0] must be a table"),
    ('{ label = "x" }', "renewal.slots[0] needs slot"),
    ('{ slot = "ZZ" }', "renewal.slots[0].slot 'ZZ'"),
    ('{ slot = 154 }', "renewal.slots[0].slot must be a string"),
    ('{ slot = "9A", label = 1 }', "renewal.slots[0].label must be a string"),
    ('{ slot = "9A" }, { slot = "9a" }', "names slot 9A twice"),
])
def test_bad_slot_entries_are_named(tmp_path: Path, entry: str, message: str) -> None:
    assert message in str(config_error(write(tmp_path, f"[renewal]\nslots = [{entry}]\n")))


def test_the_reader_documented_in_the_readme_is_read(tmp_path: Path) -> None:
    """README: "`reader =` in the configuration fixes the reader" — it was ignored."""
    assert load_settings(write(tmp_path, 'reader = "Virtual PCD 00 01"\n')).reader == "Virtual PCD 00 01"
    assert load_settings(write(tmp_path, 'reader = "A"\n'), reader="B").reader == "B"  # --reader wins


# -- every configuration the README documents loads ----------------------------------------------------
def readme_configurations() -> list[tuple[str, str]]:
    """Each ```toml block of the README, then each block with one commented-out ``# key = value``
    line switched on (replacing the same key in its table): every documented alternative."""
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "the README has no TOML example"
    out = []
    for n, block in enumerate(blocks):
        out.append((f"block{n}", block))
        lines = block.splitlines()
        table = ""
        for i, line in enumerate(lines):
            if header := re.match(r"^\[([a-z_]+)\]", line):
                table = header.group(1)
            option = re.match(r"^#\s*([a-z_]+)\s*=\s*(.+)$", line)
            if not option:
                continue
            key = option.group(1)
            variant, current = [], ""
            for j, other in enumerate(lines):
                if header := re.match(r"^\[([a-z_]+)\]", other):
                    current = header.group(1)
                if j == i:
                    variant.append(line.lstrip("#").lstrip())
                elif current == table and re.match(rf"^{key}\s*=", other):
                    continue  # the alternative replaces this key
                else:
                    variant.append(other)
            out.append((f"block{n}:{table}.{key}", "\n".join(variant) + "\n"))
    return out


@pytest.mark.parametrize("name,text", readme_configurations(), ids=lambda v: v if ":" in v or v.startswith("block") else "")
def test_every_configuration_in_the_readme_loads(tmp_path: Path, name: str, text: str) -> None:
    if "challenge_command" in name:  # challenge and challenge_command are either-or
        text = re.sub(r"(?m)^challenge = .*\n", "", text)
    settings_ = load_settings(write(tmp_path, text))
    assert settings_.source == tmp_path / "config.toml"


def test_the_readme_says_unknown_keys_are_errors() -> None:
    section = README.read_text(encoding="utf-8").split("## Configuration", 1)[1].split("\n## ", 1)[0]
    assert "unknown key" in section.lower()


# -- configuration errors raised later name the file too (issue 12 point 9) -----------------------
def test_an_error_found_after_loading_names_the_file_in_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli.failure import fail

    path = write(tmp_path, '[issuer]\ntype = "local"\n')
    code = fail(argparse.Namespace(config=str(path), json=False),
                ConfigError('issuer.directory is needed for issuer.type = "local"'))
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert f"Configuration error: {path}: issuer.directory is needed" in err and f"Fix the configuration file {path}" in err


def test_without_a_file_the_message_says_the_defaults_apply(capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli.failure import fail

    fail(argparse.Namespace(config=None, json=False), ConfigError("issuer.directory is needed"))
    err = capsys.readouterr().err
    assert "no configuration file was found; the built-in defaults apply" in err and "$CARDRENEW_CONFIG" in err


def test_a_usage_error_is_not_about_the_file() -> None:
    error = UsageError("--pin-stdin: no PIN on standard input")
    assert error.naming(Path("/etc/cardrenew/config.toml")) is error


async def test_the_tui_error_dialog_names_the_file(tmp_path: Path) -> None:
    import dataclasses

    from card.demo import demo_backend
    from tui.app import make_app

    path = write(tmp_path, "[ui]\n")
    backend, _ = demo_backend(state_dir=tmp_path / "state")
    backend.settings = dataclasses.replace(backend.settings, source=path)
    title, message, next_step = make_app(backend).explain_error(ConfigError("issuer.url is needed"))
    assert title == "Configuration error"
    assert message == f"{path}: issuer.url is needed" and next_step == f"Fix the configuration file {path}, or ask your administrator."


# -- a property: any TOML document either loads or is a ConfigError naming the file ------------------
KEYS = [(t, k) for t, keys in SCHEMA.items() for k in keys] + [("renewal", "slots")]
toml_values = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                        st.text(max_size=12), st.lists(st.integers(0, 10), max_size=3),
                        st.sampled_from(['"9A"', '"9C"', "RSA2048", "scep", "local", "default", "pin-protected"]))


def toml_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):  # a basic string of the characters that need no escape
        return '"' + "".join(c for c in value if c.isalnum() or c in " -_.:/") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return str(value)


@settings(max_examples=300, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(KEYS + [("ui", "colour"), ("", "window_days")]), toml_values),
                max_size=6, unique_by=lambda kv: kv[0]))
def test_any_document_loads_or_names_the_file(tmp_path: Path, items: list[tuple[tuple[str, str], object]]) -> None:
    by_table: dict[str, list[str]] = {}
    for (table, key), value in items:
        by_table.setdefault(table, []).append(f"{key} = {toml_literal(value)}")
    text = "\n".join(by_table.pop("", [])) + "\n" + "".join(
        f"[{table}]\n" + "\n".join(lines) + "\n" for table, lines in by_table.items())
    path = write(tmp_path, text)
    try:
        load_settings(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: ") and exc.path == path


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://ca.example.org/scep", "http:///scep", "ca.example.org/scep",
                                 "http://ca.example.org:99999/scep", "http://[::1/scep", "", "javascript:alert(1)"])
def test_an_issuer_url_that_is_not_http_with_a_host_is_a_configuration_error(tmp_path: Path, url: str) -> None:
    """Break-it: `url = "file:///etc/passwd"` loaded and was retried as an unreachable CA."""
    path = write(tmp_path, f'[issuer]\ntype = "scep"\nurl = "{url}"\n')
    message = str(config_error(path))
    assert message.startswith(str(path)) and "issuer.url" in message


@pytest.mark.parametrize("url", ["http://127.0.0.1:8090/scep", "https://ca.example.org/cgi-bin/pkiclient.exe",
                                 "HTTPS://[::1]:8443/scep"])
def test_an_http_issuer_url_loads(tmp_path: Path, url: str) -> None:
    assert load_settings(write(tmp_path, f'[issuer]\ntype = "scep"\nurl = "{url}"\n')).issuer.url == url
