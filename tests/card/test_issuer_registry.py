"""The issuer registry (issue 13): ``[issuer] type = "…"`` picks the issuer that
:func:`card.enrollment.registry.make_issuer` makes, and a type's missing settings are configuration
errors naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from card.config import ConfigError, load_settings
from card.enrollment.local import LocalCA
from card.enrollment.registry import make_issuer


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_local_type_makes_the_embedded_ca_of_the_directory(tmp_path: Path, ca: LocalCA) -> None:
    settings = load_settings(write(tmp_path, f'[issuer]\ntype = "local"\ndirectory = "{ca.directory}"\n'))
    issuer = make_issuer(settings)
    assert isinstance(issuer, LocalCA)
    assert issuer.ca_certificates() == ca.ca_certificates() and issuer.window_days == settings.window_days
    assert make_issuer(settings, window_days=7).window_days == 7  # type: ignore[attr-defined]


def test_the_scep_type_makes_a_scep_client_with_the_tables_settings(tmp_path: Path) -> None:
    from card.enrollment.scep import ScepIssuer

    settings = load_settings(write(tmp_path, '[issuer]\ntype = "scep"\nurl = "http://127.0.0.1:9/scep"\n'
                                             'ca_fingerprint = "AB:CD"\nmessage_type = "RenewalReq"\n'
                                             'timeout_s = 3\npoll_schedule_s = [1]\n'))
    issuer = make_issuer(settings)
    assert isinstance(issuer, ScepIssuer)
    assert (issuer.settings.url, issuer.settings.ca_fingerprint, issuer.settings.message_type,
            issuer.settings.timeout_s, issuer.settings.poll_schedule_s) == \
        ("http://127.0.0.1:9/scep", "abcd", "RenewalReq", 3.0, (1.0,))


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


def test_the_registry_imports_no_cryptography() -> None:
    """The TUI reads its configuration before its first frame; the issuer is made after it (issue 7)."""
    code = ("import sys, card.enrollment.registry, card.config; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cryptography', 'asn1crypto')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == "[]"
