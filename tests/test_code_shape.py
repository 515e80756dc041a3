"""The shape rules of issue 13, checked on the source (an AST scan, no import of the code):

- no file in ``card/`` or ``tui/`` is over 400 lines;
- no function or method is over 60 lines unless its docstring says why, in a line that starts
  with ``Long because:`` (a function's length runs from its ``def`` line to its last line, not
  counting decorators or the docstring);
- every ``# type: ignore`` names its error code and says why on the same line
  (``# type: ignore[code]  # why``).

The allow-lists hold what was over the limits when the rules were written and is being split now
(issue 13's refactor); an entry is removed when its owner lands. Never add an entry: split the
code, or say why in the docstring.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("card", "tui")
T = TypeVar("T")
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
REASON = re.compile(r"^\s*Long because:\s*\S", re.MULTILINE)
TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore\b(?P<rest>.*)$")
TYPE_IGNORE_WITH_REASON = re.compile(r"^\[[a-z0-9-]+(,\s*[a-z0-9-]+)*\]\s+#\s*\S")

# The allow-lists are fnmatch patterns ("card/renewal*" covers card/renewal.py and the package
# it becomes), so that a file that moves while it is split stays allowed until its owner lands.

# PENDING: files over 400 lines today, being split (owner in the comment).
LONG_FILES_PENDING: dict[str, str] = {
}

# PENDING: functions over 60 lines today ("path::qualified.name"), being split (owner).
LONG_FUNCTIONS_PENDING: dict[str, str] = {
}

# PENDING: files whose `type: ignore` comments do not say why yet; they are being split and the
# type-fix pass goes over them as they land.
IGNORE_WITHOUT_REASON_PENDING: dict[str, str] = {
}


def _sources() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _functions(tree: ast.AST) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method with its qualified name (``Class.method``, ``outer.inner``)."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                yield name, child
                yield from walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + ".")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the ``def`` to the function's last line, less the docstring's lines."""
    assert node.end_lineno is not None
    length = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str) and first.end_lineno is not None):
        length -= first.end_lineno - first.lineno + 1
    return length


def long_files() -> dict[str, int]:
    counts = {_relative(path): len(path.read_text(encoding="utf-8").splitlines()) for path in _sources()}
    return {name: count for name, count in counts.items() if count > MAX_FILE_LINES}


def long_functions() -> dict[str, int]:
    """Functions over the limit whose docstring does not say why (``Long because: …``)."""
    found: dict[str, int] = {}
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, node in _functions(tree):
            length = function_lines(node)
            if length > MAX_FUNCTION_LINES and not REASON.search(ast.get_docstring(node) or ""):
                found[f"{_relative(path)}::{name}"] = length
    return found


def ignores_without_reason() -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for path in _sources():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = TYPE_IGNORE.search(line)
            if match and not TYPE_IGNORE_WITH_REASON.match(match.group("rest")):
                found.setdefault(_relative(path), []).append(number)
    return found


def _allowed(name: str, allowed: dict[str, str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed)


def _new(offenders: dict[str, T], allowed: dict[str, str]) -> dict[str, T]:
    """The offenders no allow-list entry covers; warns about entries that cover none."""
    for pattern in sorted(allowed):
        if not any(fnmatch.fnmatchcase(name, pattern) for name in offenders):
            warnings.warn(f"{pattern} keeps the rule now: remove it from the allow-list", stacklevel=3)
    return {name: value for name, value in offenders.items() if not _allowed(name, allowed)}


def test_no_file_in_card_or_tui_is_over_400_lines() -> None:
    new = _new(long_files(), LONG_FILES_PENDING)
    assert not new, f"over {MAX_FILE_LINES} lines (split the module): {new}"


def test_no_function_is_over_60_lines_unless_its_docstring_says_why() -> None:
    new = _new(long_functions(), LONG_FUNCTIONS_PENDING)
    assert not new, (f"over {MAX_FUNCTION_LINES} lines without a 'Long because: …' line in the docstring "
                     f"(split the function, or say why): {new}")


def test_every_type_ignore_names_its_code_and_says_why() -> None:
    new = _new(ignores_without_reason(), IGNORE_WITHOUT_REASON_PENDING)
    assert not new, f"`# type: ignore[code]  # why` is the form; these lines lack the code or the why: {new}"


# -- the scanner itself, on small sources (so that the rules above cannot pass by not looking) --

def _only_function(source: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    return next(node for _, node in _functions(ast.parse(source)))


def test_function_length_counts_the_body_and_not_the_docstring() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    assert function_lines(_only_function("def f():\n" + body)) == 61
    documented = 'def f():\n    """Doc.\n\n    More doc.\n    """\n' + body
    assert function_lines(_only_function(documented)) == 61


def test_qualified_names_follow_classes_and_nesting() -> None:
    tree = ast.parse("class A:\n    def m(self):\n        def inner():\n            pass\nasync def g():\n    pass\n")
    assert [name for name, _ in _functions(tree)] == ["A.m", "A.m.inner", "g"]


def test_the_reason_must_be_its_own_docstring_line() -> None:
    assert REASON.search("Do it.\n\nLong because: one table of 40 status words reads best whole.")
    assert not REASON.search("Do it. Not long because: of anything.")
    assert not REASON.search("Long because:")


def test_a_type_ignore_needs_a_code_and_a_reason() -> None:
    def rest(line: str) -> str:
        match = TYPE_IGNORE.search(line)
        assert match is not None
        return match.group("rest")

    assert TYPE_IGNORE_WITH_REASON.match(rest("x = 1  # type: ignore[assignment]  # typeshed says int"))
    assert TYPE_IGNORE_WITH_REASON.match(rest("x = 1  # type: ignore[misc, assignment]  # old cryptography"))
    assert not TYPE_IGNORE_WITH_REASON.match(rest("x = 1  # type: ignore[assignment]"))
    assert not TYPE_IGNORE_WITH_REASON.match(rest("x = 1  # type: ignore  # no code"))
    assert not TYPE_IGNORE_WITH_REASON.match(rest("x = 1  # type: ignore"))
