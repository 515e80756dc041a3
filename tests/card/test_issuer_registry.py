"""The issuer registry (issue 13): ``[issuer] type = "…"`` picks the issuer type whose own parser
reads the table and whose factory :func:`card.enrollment.registry.make_issuer` calls; a new issuer
is one module plus one ``register`` line; an unknown type is an error naming the known types."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import hypothesis
import pytest
from hypothesis import strategies as st

from card.config import SCHEMA, ConfigError, Settings, load_settings
from card.config_schema import get
from card.enrollment import registry
from card.enrollment.http import DEFAULT_MAX_RESPONSE_BYTES
from card.enrollment.local import LocalCA
from card.enrollment.local_settings import LocalIssuerSettings
from card.enrollment.registry import IssuerType, make_issuer, register
from card.enrollment.scep_settings import ScepIssuerSettings

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    return str(exc.value)


# -- the built-in types -----------------------------------------------------------------------------
def test_without_a_type_the_embedded_ca_is_configured(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "[issuer]\n")).issuer == LocalIssuerSettings()
    assert Settings().issuer == LocalIssuerSettings()


def test_the_local_type_makes_the_embedded_ca_of_the_directory(tmp_path: Path, ca: LocalCA) -> None:
    settings = load_settings(write(tmp_path, f'[issuer]\ntype = "local"\ndirectory = "{ca.directory}"\n'
                                             'ca_fingerprint = "AB:cd 01"\n'))
    assert settings.issuer == LocalIssuerSettings(ca.directory.resolve(), "abcd01")
    issuer = make_issuer(settings)
    assert isinstance(issuer, LocalCA)
    assert issuer.ca_certificates() == ca.ca_certificates() and issuer.window_days == settings.window_days
    assert make_issuer(settings, window_days=7).window_days == 7  # type: ignore[attr-defined]


def test_a_relative_directory_is_relative_to_the_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[issuer]\ndirectory = "ca"\n'))
    assert settings.issuer == LocalIssuerSettings(tmp_path.resolve() / "ca")


def test_the_scep_type_makes_a_scep_client_with_the_tables_settings(tmp_path: Path) -> None:
    from card.enrollment.scep import ScepIssuer

    settings = load_settings(write(tmp_path, '[issuer]\ntype = "scep"\nurl = "http://127.0.0.1:9/scep"\n'
                                             'ca_fingerprint = "AB:CD"\nmessage_type = "RenewalReq"\n'
                                             'timeout_s = 3\npoll_schedule_s = [1]\ndirectory = "ignored"\n'))
    assert settings.issuer == ScepIssuerSettings("http://127.0.0.1:9/scep", "abcd", message_type="RenewalReq",
                                                 timeout_s=3.0, poll_schedule_s=(1.0,))
    cancel = threading.Event()
    issuer = make_issuer(settings, cancel=cancel)
    assert isinstance(issuer, ScepIssuer) and issuer.settings is settings.issuer and issuer.cancel is cancel


def test_the_scep_default_reply_cap_is_the_http_default() -> None:
    assert ScepIssuerSettings(None, None).max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES


def test_the_challenge_is_kept_out_of_the_settings_repr(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[issuer]\ntype = "scep"\nchallenge = "hunter2-secret"\n'))
    assert "hunter2-secret" not in repr(settings) and settings.issuer.challenge is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize("text,message", [
    ('[issuer]\ntype = "local"\n', 'issuer.directory is needed for issuer.type = "local"'),
    ('[issuer]\ntype = "local"\ndirectory = "nowhere"\n', "holds no CA (ca.pem)"),
    ('[issuer]\ntype = "scep"\nca_fingerprint = "ab"\n', 'issuer.url is needed for issuer.type = "scep"'),
    ('[issuer]\ntype = "scep"\nurl = "http://127.0.0.1:9/scep"\n', "issuer.ca_fingerprint is needed"),
])
def test_a_setting_the_type_needs_is_a_configuration_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        make_issuer(load_settings(write(tmp_path, text)))
    assert message in str(exc.value)


def test_another_types_wrong_value_is_refused_whichever_type_is_chosen(tmp_path: Path) -> None:
    """The [issuer] table is shared (the README keeps the SCEP keys beside the local ones): a wrong
    SCEP value under type = "local" is an error, as it was before the registry."""
    path = write(tmp_path, '[issuer]\ntype = "local"\nurl = "file:///etc/passwd"\n')
    assert config_error(path).startswith(f"{path}: issuer.url 'file:///etc/passwd': only http://")


# -- a new issuer: one module and one register line ------------------------------------------------------
@dataclass(frozen=True)
class EstSettings:
    issuer_type: ClassVar[str] = "est"
    server: str | None = None
    ca_fingerprint: str | None = None


def parse_est(table: Mapping[str, Any], base: Path) -> EstSettings:
    server = get(table, "est_server", str, "issuer")
    if server is not None and not server.startswith("https://"):
        raise ConfigError(f"issuer.est_server {server!r}: EST needs https://")
    return EstSettings(server)


class EstIssuer:
    name = "EST CA"

    def __init__(self, settings: EstSettings, window_days: int, cancel: threading.Event | None) -> None:
        self.settings, self.window_days, self.cancel = settings, window_days, cancel


@pytest.fixture
def est_registered() -> Iterator[None]:
    saved, saved_keys = dict(registry.REGISTRY), dict(registry.TABLE_KEYS)
    register(IssuerType("est", {"est_server": (str,)}, parse_est, EstIssuer))  # type: ignore[arg-type]
    try:
        yield
    finally:
        registry.REGISTRY.clear()
        registry.REGISTRY.update(saved)
        registry.TABLE_KEYS.clear()
        registry.TABLE_KEYS.update(saved_keys)


def test_a_registered_issuer_is_picked_by_its_type(tmp_path: Path, est_registered: None) -> None:
    settings = load_settings(write(tmp_path, '[issuer]\ntype = "est"\nest_server = "https://est.example.org"\n'))
    assert settings.issuer == EstSettings("https://est.example.org")
    issuer = make_issuer(settings, window_days=30)
    assert isinstance(issuer, EstIssuer) and issuer.settings is settings.issuer and issuer.window_days == 30
    assert "est_server" in SCHEMA["issuer"]  # the configuration's schema knows the new key


def test_a_registered_issuers_keys_are_checked_like_the_others(tmp_path: Path, est_registered: None) -> None:
    path = write(tmp_path, '[issuer]\ntype = "est"\nest_server = 7\n')
    assert config_error(path) == f"{path}: issuer.est_server must be a string, not a whole number"
    path = write(tmp_path, '[issuer]\ntype = "est"\nest_servr = "https://x"\n')
    assert config_error(path) == f"{path}: unknown key 'issuer.est_servr' (did you mean 'est_server'?)"
    path = write(tmp_path, '[issuer]\ntype = "est"\nest_server = "http://x"\n')
    assert config_error(path) == f"{path}: issuer.est_server 'http://x': EST needs https://"


def test_an_unknown_type_names_the_known_types(tmp_path: Path) -> None:
    path = write(tmp_path, '[issuer]\ntype = "acme"\n')
    assert config_error(path) == f"""{path}: issuer.type 'acme': use "local" or "scep\""""


def test_an_unknown_type_names_a_registered_type_too(tmp_path: Path, est_registered: None) -> None:
    path = write(tmp_path, '[issuer]\ntype = "acme"\n')
    assert config_error(path) == f"""{path}: issuer.type 'acme': use "local", "scep" or "est\""""


def test_settings_of_a_type_not_registered_cannot_make_an_issuer() -> None:
    with pytest.raises(ConfigError) as exc:
        make_issuer(Settings(issuer=EstSettings()))
    assert "issuer.type 'est' is not available in this version" in str(exc.value)


def test_a_type_registered_twice_or_a_key_with_other_types_is_refused(est_registered: None) -> None:
    with pytest.raises(ValueError, match="registered already"):
        register(IssuerType("est", {}, parse_est, EstIssuer))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="issuer.url is read by another type"):
        register(IssuerType("other", {"url": (list,)}, parse_est, EstIssuer))  # type: ignore[arg-type]
    assert "other" not in registry.REGISTRY


# -- start-up: the configuration and the registry import no cryptography ------------------------------------
@pytest.mark.parametrize("first", ["card.config", "card.enrollment.registry", "card.enrollment.scep_settings",
                                   "card.enrollment.local_settings", "card.enrollment.settings"])
def test_the_settings_modules_import_in_any_order_without_cryptography(first: str) -> None:
    """The TUI reads its configuration before its first frame; the issuer is made after it (issue 7)."""
    code = (f"import sys, {first}, card.config; "
            "from card.config import load_settings; load_settings(None); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'cryptography', 'asn1crypto'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_the_readme_documents_the_unknown_type_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[issuer]\ntype = "est"\n')
    message = config_error(path).removeprefix(f"{path}: ")
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())  # lines joined
    assert f"`{message}`" in readme


# -- a property: another type's keys never change the chosen type's settings ------------------------------
ISSUER_VALUES = {
    "directory": st.sampled_from(['"ca"', '"/srv/ca"']),
    "ca_fingerprint": st.sampled_from(['"AB:CD"', '"ab cd 01"']),
    "url": st.sampled_from(['"http://127.0.0.1:9/scep"', '"ftp://x"', '"https://ca.example.org/scep"']),
    "challenge": st.just('"s3cret"'),
    "challenge_command": st.sampled_from(['["ra", "{slot}"]', '["ra", "{user}"]', "[]"]),
    "message_type": st.sampled_from(['"PKCSReq"', '"RenewalReq"', '"GetCert"']),
    "allow_legacy_algorithms": st.sampled_from(["true", "false"]),
    "timeout_s": st.sampled_from(["15", "0.5", "nan", "0", "4000"]),
    "max_response_bytes": st.sampled_from(["4096", "12"]),
    "poll_schedule_s": st.sampled_from(["[1, 2]", "[-1]", "[]"]),
}


@hypothesis.settings(max_examples=150, derandomize=True, database=None, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(st.sampled_from(["local", "scep"]),
                  st.dictionaries(st.sampled_from(sorted(ISSUER_VALUES)), st.integers(0, 4), max_size=6),
                  st.data())
def test_another_types_keys_never_change_the_chosen_types_settings(tmp_path: Path, chosen: str, keys: dict[str, int],
                                                                   data: st.DataObject) -> None:
    """Every document loads or is a ConfigError naming the file; when it loads, the chosen type's
    settings are those of the same document without the other type's keys."""
    lines = {key: data.draw(ISSUER_VALUES[key], label=key) for key in keys}
    own = set(registry.REGISTRY[chosen].keys)
    text = f'[issuer]\ntype = "{chosen}"\n' + "".join(f"{k} = {v}\n" for k, v in lines.items())
    only_own = f'[issuer]\ntype = "{chosen}"\n' + "".join(f"{k} = {v}\n" for k, v in lines.items() if k in own)
    path = write(tmp_path, text)
    try:
        full = load_settings(path).issuer
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: issuer"), str(exc)
        return
    assert type(full).issuer_type == chosen
    assert load_settings(write(tmp_path, only_own)).issuer == full
