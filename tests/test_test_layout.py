"""Tests share code through tests/conftest.py (fixtures) and helper modules, never by importing a test module.

A test module that imports another drags the other's tests, marks and module-level set-up into its own run, and ties
two files together that only share a helper. The check parses every file under tests/ (helpers and conftest.py too)
and finds each import of a `tests.test_*` module: `import`, `from ... import` (relative ones resolved),
`importlib.import_module` / `__import__` with a literal name, and imports in string literals that are Python source,
such as a probe script run in a child process (there only absolute imports count: a `python -c` script has no package).
The checker is proven on a made-up tree first. Issue 16.
"""

from __future__ import annotations

import ast
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sources import write_tree

TESTS = Path(__file__).resolve().parent


@dataclass(frozen=True, order=True)
class Violation:
    file: str  # relative to the folder that holds the test package
    line: int
    target: str  # the test module imported


def named_test_module(name: str, package: str, folder: Path) -> str | None:
    """The test module a dotted name is or lies in (`tests.test_x` for `tests.test_x.helper`), else None.
    `tests.hcl.test_data` is a name inside the helper tests/hcl.py, not a module: only packages may come before."""
    parts = name.split(".")
    if parts[0] != package:
        return None
    for index, part in enumerate(parts[1:], start=1):
        if part.startswith("test_"):
            return ".".join(parts[: index + 1]) if folder.joinpath(*parts[1:index]).is_dir() else None
    return None


def _resolve(node: ast.ImportFrom, here: list[str]) -> str | None:
    """The absolute module a `from` statement names; None when it climbs above the package."""
    if not node.level:
        return node.module or ""
    if node.level > len(here):
        return None
    base = here[: len(here) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _named_modules(tree: ast.AST, here: list[str] | None) -> list[tuple[int, str]]:
    """(line, dotted name) for every module the code imports, and `module.name` for each name a `from` imports (it
    may be a module); relative imports only when `here`, the code's package, is known."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.level == 0 or here is not None):
            module = _resolve(node, here or [])
            if module is not None:
                found.append((node.lineno, module))
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def _code_in_strings(tree: ast.AST) -> list[tuple[int, ast.Module]]:
    """(line of the string, its parse) for each string literal that is Python source with an import in it."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "import" in node.value:
            try:
                with warnings.catch_warnings():  # a regex in the text is no reason to warn about escapes
                    warnings.simplefilter("ignore")
                    found.append((node.lineno, ast.parse(textwrap.dedent(node.value))))
            except (SyntaxError, ValueError):
                continue
    return found


def _imports_in_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line of the outermost string, dotted name) for the absolute imports of the code in string literals."""
    found = []
    for line, code in _code_in_strings(tree):
        found += [(line, module) for _, module in _named_modules(code, None)]
        found += [(line, module) for _, module in _imports_in_strings(code)]  # a probe that writes a probe
    return found


def imports_of_test_modules(folder: Path, package: str) -> list[Violation]:
    """Every import of a test module (`<package>.test_*`, at any depth) by any file under `folder`."""
    found: set[Violation] = set()
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder.parent)
        here = [package, *relative.parts[1:-1]]  # the package the file is in
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, name in [*_named_modules(tree, here), *_imports_in_strings(tree)]:
            target = named_test_module(name, package, folder)
            if target is not None:
                found.add(Violation(relative.as_posix(), line, target))
    return sorted(found)


# -- the checker checks what it claims (on a made-up tree whose package is `suite`) --------------------------------


SUITE = {
    "suite/__init__.py": "",
    "suite/helper.py": "X = 1\n\n\ndef test_data():\n    return [1]\n",
    "suite/conftest.py": "from suite.helper import X, test_data\nfrom . import helper\n",
    "suite/test_a.py": "from suite.helper import X\nfrom suite.test_b import Y\n",
    "suite/test_b.py": "Y = 1\nfrom suite import helper, test_a\n",
    "suite/test_c.py": "import suite.test_a as a\nfrom . import test_b\nfrom .test_a import X\nfrom .helper import X\n",
    "suite/test_d.py": (
        "import importlib\n"
        "m = importlib.import_module('suite.test_a')\n"
        "PROBE = '''\\\nimport sys\nfrom suite.test_d import Y\n'''\n"
    ),
    "suite/test_e.py": (
        "import textwrap\n"
        "CODE = textwrap.dedent('''\n    from suite.test_a import X\n''')\n"
        "CHILD = 'from . import test_a'\n"  # relative, in a script for a child process: no package there
        "OUTER = 'CODE = \"import suite.test_b\"'\n"
        "TEXT = 'we import suite.test_a here'\n"  # prose, not Python
    ),
    "suite/sub/__init__.py": "",
    "suite/sub/test_f.py": "from ..test_a import X\nfrom ..helper import X as H\nfrom ... import nowhere\n",
}


def test_every_way_of_importing_a_test_module_is_found_and_helpers_are_not(tmp_path: Path) -> None:
    found = imports_of_test_modules(write_tree(tmp_path, SUITE) / "suite", "suite")
    assert [(f.file, f.line, f.target) for f in found] == [
        ("suite/sub/test_f.py", 1, "suite.test_a"),
        ("suite/test_a.py", 2, "suite.test_b"),
        ("suite/test_b.py", 2, "suite.test_a"),
        ("suite/test_c.py", 1, "suite.test_a"),
        ("suite/test_c.py", 2, "suite.test_b"),
        ("suite/test_c.py", 3, "suite.test_a"),
        ("suite/test_d.py", 2, "suite.test_a"),
        ("suite/test_d.py", 3, "suite.test_d"),  # a probe importing its own test module is no exception
        ("suite/test_e.py", 2, "suite.test_a"),
        ("suite/test_e.py", 6, "suite.test_b"),
    ]


def test_a_tree_that_shares_only_through_helpers_passes(tmp_path: Path) -> None:
    clean = {name: text for name, text in SUITE.items() if not name.endswith(("test_a.py", "test_b.py"))}
    clean |= {
        "suite/test_c.py": "from suite.helper import X\nfrom .helper import test_data\nfrom . import helper\n",
        "suite/test_d.py": "PROBE = 'from suite.helper import X'\n",
        "suite/test_e.py": "import importlib\nm = importlib.import_module('suite.helper')\n",
        "suite/sub/test_f.py": "from ..helper import X\n",
    }
    assert imports_of_test_modules(write_tree(tmp_path, clean) / "suite", "suite") == []


# -- the project -----------------------------------------------------------------------------------------------------


def test_no_file_under_tests_imports_a_test_module() -> None:
    found = imports_of_test_modules(TESTS, TESTS.name)
    assert not found, "move what is shared to tests/conftest.py or a helper module: " + ", ".join(
        f"{f.file}:{f.line} imports {f.target}" for f in found
    )


def helper_modules(folder: Path = TESTS) -> list[str]:
    """tests/<name>.py for each helper module, tests/<name>/ for each helper package."""
    files = [
        f"{folder.name}/{path.name}"
        for path in sorted(folder.glob("*.py"))
        if not path.name.startswith("test_") and path.name not in ("__init__.py", "conftest.py")
    ]
    packages = [f"{folder.name}/{path.parent.name}/" for path in sorted(folder.glob("*/__init__.py"))]
    return files + packages


@pytest.mark.parametrize("helper", helper_modules())
def test_the_conftest_docstring_names_every_helper_module(helper: str) -> None:
    docstring = ast.get_docstring(ast.parse((TESTS / "conftest.py").read_text(encoding="utf-8"))) or ""
    assert helper in docstring, f"tests/conftest.py's docstring does not name the helper {helper}"
