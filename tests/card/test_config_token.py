"""The ``[card]`` token keys (issue 14): ``interface``, ``module``, ``token_label``, ``token_serial``,
``old_keys`` and ``keys``. Every bad value is a configuration error (exit 2) naming the file and the
key; a missing module is said plainly; any document of these keys loads or names the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from card.config import ConfigError, KeySelector, Settings, load_settings
from card.config_token import parse_key_id
from tui.cli import EXIT_USAGE, main

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def module(tmp_path: Path) -> Path:
    """A stand-in module file (the configuration only checks that it is a regular file)."""
    path = tmp_path / "libvendor-pkcs11.so"
    path.write_bytes(b"\x7fELF")
    return path


def error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: "), message  # the file is named
    assert exc.value.path == path
    return message


def test_the_default_is_a_piv_card() -> None:
    token = Settings().token
    assert token.interface == "piv" and token.module is None and token.keys == () and token.old_keys == "delete"


def test_a_pkcs11_token_loads_with_every_key(tmp_path: Path, module: Path) -> None:
    token = load_settings(write(tmp_path, f'''[card]
interface = "pkcs11"
module = "{module}"
token_label = "cardrenew  "
token_serial = " 1a2b3c4d "
old_keys = "keep"
keys = [{{ label = "Authentication" }}, {{ id = "0x0A:1b" }}]
''')).token
    assert token.is_pkcs11 and token.module == module
    assert token.token_label == "cardrenew" and token.token_serial == "1a2b3c4d"  # the token's padding is not part of it
    assert token.old_keys == "keep"
    assert token.keys == (KeySelector(label="Authentication"), KeySelector(key_id=b"\x0a\x1b"))
    assert token.selects("Authentication", b"\x99") and token.selects("Other", b"\x0a\x1b")
    assert not token.selects("Other", b"\x0a")


def test_a_relative_module_is_relative_to_the_configuration_file(tmp_path: Path, module: Path) -> None:
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    (elsewhere / "lib.so").write_bytes(b"x")
    path = elsewhere / "config.toml"
    path.write_text('[card]\ninterface = "pkcs11"\nmodule = "lib.so"\n')
    assert load_settings(path).token.module == elsewhere / "lib.so"


def test_without_keys_every_certificate_with_its_key_is_renewed(tmp_path: Path, module: Path) -> None:
    token = load_settings(write(tmp_path, f'[card]\ninterface = "pkcs11"\nmodule = "{module}"\n')).token
    assert token.keys == () and token.selects("anything", b"\x01")


@pytest.mark.parametrize("text,words", [
    ('interface = "pcsc"', "card.interface 'pcsc': use \"piv\" or \"pkcs11\""),
    ('interface = "PKCS11"', "card.interface 'PKCS11': use \"piv\" or \"pkcs11\" (did you mean 'pkcs11'?)"),
    ('interface = 11', "card.interface must be a string, not a whole number"),
    ('interface = "pkcs11"', "card.interface = \"pkcs11\" needs card.module"),
    ('interface = "pkcs11"\nmodule = ""', "card.interface = \"pkcs11\" needs card.module"),
    ('interface = "pkcs11"\nmodule = "/nonexistent/libidprime.so"',
     "card.module /nonexistent/libidprime.so: not found (the token's PKCS#11 library"),
    ('interface = "pkcs11"\nmodule = "/"', "card.module /: not a regular file"),
    ('module = "/x.so"', "card.module is read only with card.interface = \"pkcs11\""),
    ('token_label = "x"', "card.token_label is read only with card.interface = \"pkcs11\""),
    ('keys = [{ id = "01" }]', "card.keys is read only with card.interface = \"pkcs11\""),
    ('old_keys = "superseded"', "card.old_keys 'superseded': use \"delete\""),
    ('old_key = "keep"', "unknown key 'card.old_key' (did you mean 'old_keys'?)"),
])
def test_a_bad_value_names_the_file_and_the_key(tmp_path: Path, text: str, words: str) -> None:
    assert words in error(tmp_path, f"[card]\n{text}\n")


@pytest.mark.parametrize("text,words", [
    ('token_label = "  "', "card.token_label is empty"),
    ('token_label = "' + "x" * 33 + '"', "card.token_label is longer than the 32 bytes"),
    ('token_label = "' + "é" * 17 + '"', "card.token_label is longer than the 32 bytes"),
    ('token_label = "a\\u0007b"', "card.token_label holds a control character"),
    ('token_serial = "12345678901234567"', "card.token_serial must be at most 16 ASCII characters"),
    ('token_serial = "ü"', "card.token_serial must be at most 16 ASCII characters"),
    ('keys = []', "card.keys is empty; leave it out"),
    ('keys = ["Authentication"]', "card.keys[0] must be a table like { label = \"Authentication\" }"),
    ('keys = [{ lable = "A" }]', "unknown key 'card.keys[0].lable' (did you mean 'label'?)"),
    ('keys = [{ label = "A", id = "01" }]', "card.keys[0] must name one key"),
    ('keys = [{}]', "card.keys[0] must name one key"),
    ('keys = [{ id = 1 }]', "card.keys[0].id must be a string, not a whole number"),
    ('keys = [{ id = "0g" }]', "card.keys[0].id '0g': not hex digits"),
    ('keys = [{ id = "123" }]', "card.keys[0].id '123': not hex digits"),
    ('keys = [{ id = "' + "00" * 256 + '" }]', "longer than 255 bytes"),
    ('keys = [{ label = "" }]', "card.keys[0].label is empty"),
    ('keys = [{ id = "0a" }, { id = "0A" }]', "card.keys names id 0A twice"),
    ('keys = [{ label = "A" }, { label = "A" }]', "card.keys names label 'A' twice"),
])
def test_a_bad_pkcs11_value_names_the_file_and_the_key(tmp_path: Path, module: Path, text: str, words: str) -> None:
    assert words in error(tmp_path, f'[card]\ninterface = "pkcs11"\nmodule = "{module}"\n{text}\n')


def test_piv_slots_with_a_pkcs11_token_are_an_error_not_ignored(tmp_path: Path, module: Path) -> None:
    message = error(tmp_path, f'[renewal]\nslots = [{{ slot = "9A" }}]\n[card]\ninterface = "pkcs11"\nmodule = "{module}"\n')
    assert "renewal.slots names PIV slots; with card.interface = \"pkcs11\" name the keys to renew with card.keys" in message


def test_the_cli_says_a_missing_module_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[card]\ninterface = "pkcs11"\nmodule = "/opt/thales/libIDPrimePKCS11.so"\n')
    assert main(["status", "--config", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"Configuration error: {path}: card.module /opt/thales/libIDPrimePKCS11.so: not found" in err
    assert f"Fix the configuration file {path}" in err


@pytest.mark.skipif(not Path(SOFTHSM).is_file(), reason="softhsm2 is not installed")
def test_the_softhsm2_module_loads(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, f'[card]\ninterface = "pkcs11"\nmodule = "{SOFTHSM}"\n')).token.module == Path(SOFTHSM)


@pytest.mark.parametrize("text,key_id", [("01", b"\x01"), ("0x0102", b"\x01\x02"), ("a1:B2", b"\xa1\xb2"),
                                         (" 0a 0b ", b"\x0a\x0b")])
def test_a_key_id_is_hex(text: str, key_id: bytes) -> None:
    assert parse_key_id(text) == key_id


# -- a property: any [card] table loads or is a ConfigError naming the file and a card key -----------------
CARD_KEYS = ["interface", "module", "token_label", "token_serial", "old_keys", "keys", "max_certificate_bytes",
             "modul", "label"]
text_values = st.one_of(st.sampled_from(["piv", "pkcs11", "delete", "keep", "", " ", "MODULE", "01", "0x0g",
                                         "a" * 33, "ü" * 10]), st.text(max_size=20))
entry = st.dictionaries(st.sampled_from(["label", "id", "ID"]), st.one_of(text_values, st.integers(0, 300)), max_size=2)
values = st.one_of(text_values, st.integers(-5, 70000), st.booleans(), st.lists(st.one_of(entry, text_values), max_size=3))


def toml_string(text: str) -> str:
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\U{ord(c):08x}" for c in text) + '"'


def toml_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return str(value)


@settings(max_examples=300, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(CARD_KEYS), values, max_size=5), st.booleans(), st.booleans())
def test_any_card_table_loads_or_names_the_file_and_the_key(tmp_path: Path, table: dict[str, object], real_module: bool,
                                                           slots: bool) -> None:
    module = tmp_path / "libtoken.so"
    module.write_bytes(b"\x7fELF")
    if real_module and "module" in table:
        table["module"] = str(module)
    text = ('[renewal]\nslots = [{ slot = "9A" }]\n' if slots else "") + "[card]\n" + "".join(
        f"{key} = {toml_literal(value)}\n" for key, value in table.items())
    path = write(tmp_path, text)
    try:
        token = load_settings(path).token
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and exc.path == path
        assert "card." in message or "renewal.slots" in message, message
        return
    # what loaded is what a renewal can use: a PKCS#11 token has a module that is a file, and keys that name something
    assert token.interface in ("piv", "pkcs11") and token.old_keys in ("delete", "keep")
    if token.is_pkcs11:
        assert token.module is not None and token.module.is_file() and not slots
        assert all((k.label is None) != (k.key_id is None) for k in token.keys)
        assert len(set(token.keys)) == len(token.keys)
        assert token.token_label is None or 0 < len(token.token_label.encode()) <= 32
    else:
        assert token.module is None and token.keys == () and token.token_label is None
