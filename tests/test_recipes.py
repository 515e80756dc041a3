"""The recipes of docs/architecture.md §6 hold: each is followed on a copy of the tree, touching
only the files the recipe names, and the result works (issue 13: "adding an issuer … with the
files one touches (at most two for an issuer)").
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for package in ("card", "tui"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return tmp_path


def run(tree: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(tree), XDG_CONFIG_HOME=str(tree / "xdg"))
    env.pop("CARDRENEW_CONFIG", None)
    return subprocess.run([sys.executable, *argv], cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def changed_files(tree: Path) -> set[str]:
    """Files of card/ and tui/ that differ from (or are missing in) the repository."""
    changed = set()
    for path in tree.rglob("*.py"):
        relative = path.relative_to(tree)
        if relative.parts[0] not in ("card", "tui"):
            continue
        original = ROOT / relative
        if not original.exists() or original.read_bytes() != path.read_bytes():
            changed.add(relative.as_posix())
    return changed


def recipe_files(title: str) -> set[str]:
    """The files a recipe of docs/architecture.md names in its numbered steps."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"### {title}")
    end = text.find("\n### ", start + 1)
    steps = re.findall(r"^\d+\. (`[^`]+`)", text[start:end if end != -1 else None], re.MULTILINE)
    return {step.strip("`").split(":")[0] for step in steps}


TOY_ISSUER = '''\
"""A toy issuer: the recipe's first file."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from card.config_schema import get

TOY_KEYS: dict[str, tuple[type, ...]] = {"greeting": (str,)}


@dataclass(frozen=True)
class ToySettings:
    issuer_type: ClassVar[str] = "toy"
    greeting: str | None = None
    ca_fingerprint: str | None = None


def parse_toy_table(table: Mapping[str, Any], base: Path) -> ToySettings:
    return ToySettings(get(table, "greeting", str, "issuer"))


class ToyIssuer:
    def __init__(self, greeting: str | None) -> None:
        self.greeting = greeting


def make_toy_issuer(settings: ToySettings, window_days: int, cancel: threading.Event | None) -> ToyIssuer:
    return ToyIssuer(settings.greeting)
'''


def test_adding_an_issuer_is_one_module_and_one_registry_line(tree: Path) -> None:
    assert recipe_files("Adding an issuer") == {"card/enrollment/<name>.py", "card/enrollment/registry.py"}
    (tree / "card/enrollment/toy.py").write_text(TOY_ISSUER, encoding="utf-8")
    registry = tree / "card/enrollment/registry.py"
    registry.write_text(registry.read_text(encoding="utf-8")
                        + "from card.enrollment.toy import TOY_KEYS, make_toy_issuer, parse_toy_table  # noqa: E402\n"
                        + 'register(IssuerType("toy", TOY_KEYS, parse_toy_table, make_toy_issuer))\n', encoding="utf-8")
    (tree / "config.toml").write_text('[issuer]\ntype = "toy"\ngreeting = "hello"\n', encoding="utf-8")
    (tree / "bad.toml").write_text('[issuer]\ntype = "est"\n', encoding="utf-8")
    result = run(tree, "-c", textwrap.dedent("""
        from card.config import ConfigError, load_settings
        from card.enrollment.registry import make_issuer
        issuer = make_issuer(load_settings("config.toml"))
        print(type(issuer).__name__, issuer.greeting)
        try:
            load_settings("bad.toml")
        except ConfigError as exc:
            print(exc)
    """))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ToyIssuer hello"
    assert '"toy"' in lines[1]  # an unknown type's error lists the new one
    assert changed_files(tree) == {"card/enrollment/toy.py", "card/enrollment/registry.py"}


def test_adding_a_cli_subcommand_is_its_module_a_parser_function_and_one_table_line(tree: Path) -> None:
    assert recipe_files("Adding a CLI subcommand") == {"tui/cli/<command>.py", "tui/cli/parser.py",
                                                       "tui/cli/commands.py"}
    (tree / "tui/cli/hello.py").write_text(textwrap.dedent('''\
        """cardrenew hello: the recipe's module."""

        from __future__ import annotations

        import argparse

        from tui.cli.exit_codes import EXIT_OK


        def cmd_hello(args: argparse.Namespace) -> int:
            print(f"hello {args.name}")
            return EXIT_OK
    '''), encoding="utf-8")
    parser = tree / "tui/cli/parser.py"
    text = parser.read_text(encoding="utf-8")
    text = text.replace("    _add_status(sub, parents)\n", "    _add_status(sub, parents)\n    _add_hello(sub, parents)\n", 1)
    text += textwrap.dedent('''

        def _add_hello(sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: _Parents) -> None:
            p = sub.add_parser("hello", parents=[parents.common], help="say hello")
            p.add_argument("name")
    ''')
    parser.write_text(text, encoding="utf-8")
    commands = tree / "tui/cli/commands.py"
    text = commands.read_text(encoding="utf-8")
    text = text.replace('    ("status", None): "tui.cli.status:cmd_status",\n',
                        '    ("status", None): "tui.cli.status:cmd_status",\n    ("hello", None): "tui.cli.hello:cmd_hello",\n', 1)
    commands.write_text(text, encoding="utf-8")

    result = run(tree, "-m", "tui", "hello", "world")
    assert (result.returncode, result.stdout) == (0, "hello world\n"), result.stderr
    assert "hello" in run(tree, "-m", "tui", "--help").stdout
    assert changed_files(tree) == {"tui/cli/hello.py", "tui/cli/parser.py", "tui/cli/commands.py"}
