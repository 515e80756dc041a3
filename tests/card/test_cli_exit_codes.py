"""The exit codes ``cardrenew --help`` lists are the README's (one table: tui.cli.exit_codes.EXIT_CODES).
Was: --help stopped at 13; the README also documents 129, 130 and 143 (ended by a signal)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tui.cli import EXIT_CODES, main

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_exit_codes() -> set[int]:
    section = README.read_text(encoding="utf-8").split("### Exit codes", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if re.match(r"\|\s*\d", line)]
    return {int(code) for row in rows for code in re.findall(r"\d+", row)}


def test_the_readme_and_the_table_list_the_same_codes() -> None:
    assert readme_exit_codes() == set(EXIT_CODES)


def test_help_lists_every_documented_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    epilog = " ".join(capsys.readouterr().out.split("Exit codes:", 1)[1].split())
    listed = {int(code) for code in re.findall(r"(?:^|; )(\d+) ", epilog)}
    assert listed == readme_exit_codes()
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {' '.join(meaning.split())}" in epilog


def test_a_refused_management_key_is_a_preflight_refusal_not_an_unexpected_error() -> None:
    """Tester F-17: a wrong management key (PIV) or a refused SO login (PKCS#11) exited 1, which the
    README calls "unexpected error"; it is a preflight refusal with nothing changed: 11."""
    from card.errors import ManagementKeyError
    from tui.cli.exit_codes import EXIT_REFUSED
    from tui.cli.failure import exit_code_for

    assert exit_code_for(ManagementKeyError("the card management key was not accepted")) == EXIT_REFUSED
