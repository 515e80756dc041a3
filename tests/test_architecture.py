"""The layers of DESIGN §2 are enforced: ``lint-imports`` keeps every contract in pyproject.toml,
and breaks the named contract when a module imports across a layer (issue 13, "Done when").

The violation tests copy ``card/``, ``tui/`` and ``pyproject.toml`` to a temporary directory, add
one forbidden import, and run the same ``lint-imports`` there (``PYTHONPATH`` puts the copy ahead
of the editable install), so the repository itself is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(cwd: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(cwd))
    command = [str(LINT_IMPORTS), "--no-cache", "--no-logo"]
    for contract in contracts:
        command += ["--contract", contract]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_every_import_contract_is_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    for package in ("card", "tui"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _first_module(tree: Path, package: str) -> Path:
    """A module of ``package`` (``card.apdu`` or ``card/apdu/__init__.py`` once it is a package)."""
    parts = package.split(".")
    as_module = tree.joinpath(*parts[:-1], parts[-1] + ".py")
    return as_module if as_module.exists() else tree.joinpath(*parts, "__init__.py")


@pytest.mark.parametrize(
    ("module", "line", "contract_id", "contract_words"),
    [
        # card/ importing Textual (DESIGN §2: card/ never imports Textual).
        ("card.tlv", "import textual", "card-no-ui", "card/ never imports the TUI or Textual"),
        # card/ importing the TUI.
        ("card.journal", "import tui.widgets", "card-no-ui", "card/ never imports the TUI or Textual"),
        # pyscard outside card.pcsc.
        ("card.piv", "import smartcard", "pyscard-only-in-pcsc", "only card.pcsc imports pyscard"),
        # The PKCS#11 binding outside card.pkcs11 (issue 14): the token protocol stays binding-free.
        ("card.token.base", "import pkcs11", "pkcs11-only-in-card-pkcs11", "only card.pkcs11 imports the PKCS#11"),
        # The token boundary below the engine: a token reaching up to the engine (issue 14).
        ("card.token.base", "import card.renewal.engine", "card-layers", "card layers"),
        # The PIV commands know nothing of the token boundary over them.
        ("card.piv.session", "import card.token.base", "card-layers", "card layers"),
        # A lower layer importing a higher one: the APDU layer reaching up to the engine.
        ("card.apdu", "import card.renewal", "card-layers", "card layers"),
        # The PIV layer reaching up to the issuers (an issuer may use card types, never the reverse).
        ("card.piv", "import card.enrollment.base", "card-layers", "card layers"),
        # The emulator (a card) importing the door.
        ("card.emulator.vpcd", "import card.service", "emulator-is-a-card", "the emulator is a card"),
        # The app reaching past the door to the PIV layer's internals.
        ("tui.widgets", "import card.apdu", "tui-uses-the-door", "the rest of the TUI"),
        # A CLI subcommand sending APDUs itself.
        ("tui.cli.audit", "import card.apdu", "cli-uses-the-door", "the CLI reaches the card only"),
        # A pane importing the engine instead of the door.
        ("tui.screens.logon", "import card.renewal", "panes-use-the-door", "TUI panes (tui.screens)"),
    ],
)
def test_a_forbidden_import_breaks_the_named_contract(
    tree_copy: Path, module: str, line: str, contract_id: str, contract_words: str
) -> None:
    before = _lint_imports(tree_copy, contract_id)
    assert before.returncode == 0, before.stdout + before.stderr  # the copy is clean to start with

    source = _first_module(tree_copy, module)
    source.write_text(source.read_text() + f"\n{line}  # deliberate violation\n")
    after = _lint_imports(tree_copy, contract_id)

    assert after.returncode != 0, after.stdout
    assert "BROKEN" in after.stdout and contract_words in after.stdout, after.stdout
    assert "1 broken" in after.stdout, after.stdout
