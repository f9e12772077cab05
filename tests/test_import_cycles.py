"""No import cycle in app.py, chalicelib, runner or scripts, counting the imports inside functions; and every import
inside a function says why it is there.

The modules are parsed, not imported: the graph holds every `import` and `from ... import` that can run, at module level
and inside functions (an import inside a function only delays a cycle to the first call; it does not remove it).
Imports under `if TYPE_CHECKING:` never run and are left out. A function-level ("lazy") import must carry a comment
`# lazy: <why>` on its line, or on the line above it; a run of consecutive imports is covered by one such comment on
the run's first line or the line above the run.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sources import write_tree

REPO = Path(__file__).resolve().parent.parent
ROOTS = ("app.py", "chalicelib", "runner", "scripts")
LAZY = re.compile(r"\blazy:\s*\S")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (one of ours)
    line: int
    lazy: bool  # inside a function
    explained: bool  # a `# lazy: <why>` comment covers it


def module_files(repo: Path = REPO) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ROOTS."""
    found: dict[str, Path] = {}
    for root in ROOTS:
        path = repo / root
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            parts = list(file.relative_to(repo).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = file
    return found


def _comments(source: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string
    return comments


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]) -> list[str]:
    """Our modules the statement imports (`from a import b` is module a.b when that is a module, else a)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in modules]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    targets = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
    if len(targets) < len(node.names) and base in modules:
        targets.append(base)
    return targets


def _walk(body: list[ast.stmt], in_function: bool) -> Iterator[tuple[list[ast.stmt], bool]]:
    """Every statement list (block) that can run, and whether it is inside a function; TYPE_CHECKING blocks skipped."""
    yield body, in_function
    for node in body:
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _walk(node.orelse, in_function)
            continue
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                yield from _walk(block, inner)
        for handler in getattr(node, "handlers", []) or []:
            yield from _walk(handler.body, inner)
        for case in getattr(node, "cases", []) or []:
            yield from _walk(case.body, inner)


def imports_of(module: str, file: Path, modules: set[str]) -> list[Import]:
    source = file.read_text(encoding="utf-8")
    comments = _comments(source)
    lines = source.splitlines()
    is_package = file.name == "__init__.py"

    def said(line: int) -> bool:
        return bool(LAZY.search(comments.get(line, "")))

    def comment_above(line: int) -> bool:
        above = line - 1
        return above >= 1 and lines[above - 1].lstrip().startswith("#") and said(above)

    found: list[Import] = []
    for block, in_function in _walk(ast.parse(source, filename=str(file)).body, False):
        run_start: int | None = None  # first line of the current run of consecutive imports
        for node in block:
            if not isinstance(node, ast.Import | ast.ImportFrom):
                run_start = None
                continue
            run_start = node.lineno if run_start is None else run_start
            explained = said(node.lineno) or comment_above(node.lineno)
            explained = explained or said(run_start) or comment_above(run_start)
            for target in _targets(node, module, is_package, modules):
                found.append(Import(module, target, node.lineno, in_function, explained))
            if in_function and not _targets(node, module, is_package, modules):
                found.append(Import(module, "", node.lineno, in_function, explained))  # third-party or stdlib
    return found + _dynamic_imports(module, source, modules, said)


def _dynamic_imports(module: str, source: str, modules: set[str], said: Callable[[int], bool]) -> list[Import]:
    """`importlib.import_module("ours")` and `__import__("ours")` count too (a string naming the module, or a
    module-level constant holding that string): they hid `orchestrator -> local_executor -> app` before issue 16."""
    tree = ast.parse(source)
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            in_function.update(id(inner) for inner in ast.walk(node) if inner is not node)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name not in ("import_module", "__import__"):
            continue
        argument = node.args[0]
        target = argument.value if isinstance(argument, ast.Constant) else None
        if isinstance(argument, ast.Name):
            target = constants.get(argument.id)
        if isinstance(target, str) and target in modules:
            found.append(Import(module, target, node.lineno, id(node) in in_function, said(node.lineno)))
    return found


def all_imports(repo: Path = REPO) -> list[Import]:
    files = module_files(repo)
    return [found for module, file in files.items() for found in imports_of(module, file, set(files))]


def cycles(imports: list[Import]) -> list[list[str]]:
    """The import cycles: strongly connected components (Tarjan) with more than one module, or a module importing
    itself; each as a closed path through the component, for the failure message."""
    graph: dict[str, set[str]] = {}
    for found in imports:
        if found.target:
            graph.setdefault(found.module, set()).add(found.target)
            graph.setdefault(found.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_closed_path(component, graph) for component in components]


def _closed_path(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A path start -> ... -> start inside the component (breadth first, so a shortest one)."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node] & members):
                if successor == start:
                    back = [node]
                    while back[-1] != start:
                        back.append(previous[back[-1]])
                    return [*reversed(back), start]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    return [*component, start]


@functools.cache
def project_imports() -> tuple[Import, ...]:
    return tuple(all_imports())


def _named(path: list[str]) -> str:
    return " -> ".join(path)


# -- the checker checks what it claims (on small made-up trees) ------------------------------------------------------


def test_a_cycle_through_an_import_inside_a_function_is_found_and_named(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        {
            "app.py": "from chalicelib import aws\n",
            "chalicelib/__init__.py": "",
            "chalicelib/aws.py": "def service():\n    from chalicelib import service  # lazy: hides a cycle\n",
            "chalicelib/service.py": "from chalicelib.orchestrator import start\n",
            "chalicelib/orchestrator.py": "from . import aws\n",
        },
    )
    assert cycles(all_imports(tree)) == [
        ["chalicelib.aws", "chalicelib.service", "chalicelib.orchestrator", "chalicelib.aws"]
    ]


def test_a_cycle_hidden_behind_importlib_is_found(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        {
            "app.py": "from chalicelib import orchestrator\n",
            "chalicelib/__init__.py": "",
            "chalicelib/orchestrator.py": (
                "import importlib\nMODULE = 'chalicelib.local_executor'\n"
                "def start():\n    return importlib.import_module(MODULE)\n"
            ),
            "chalicelib/local_executor.py": "def handlers():\n    return __import__('app')  # lazy: hides a cycle\n",
        },
    )
    assert cycles(all_imports(tree)) == [["app", "chalicelib.orchestrator", "chalicelib.local_executor", "app"]]
    unexplained = [(found.module, found.line) for found in all_imports(tree) if found.lazy and not found.explained]
    assert unexplained == [("chalicelib.orchestrator", 4)]


def test_type_checking_imports_make_no_cycle_and_a_package_importing_itself_does(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        {
            "runner/__init__.py": "",
            "runner/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from runner import b\n",
            "runner/b.py": "import runner.a\n",
            "scripts/x.py": "import scripts.x\n",
        },
    )
    assert cycles(all_imports(tree)) == [["scripts.x", "scripts.x"]]


def test_a_lazy_import_needs_its_reason_on_its_line_or_above_its_run(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        {
            "runner/__init__.py": "",
            "runner/m.py": (
                "def f():\n"
                "    import json  # lazy: reason on the line\n"
                "    x = 1\n"
                "    # lazy: one reason for the run below\n"
                "    import csv\n"
                "    import io\n"
                "    y = 2\n"
                "    import os  # noqa: PLC0415\n"
                "    if y:\n"
                "        import re  # lazy:\n"
                "    try:\n"
                "        import glob\n"
                "    except ImportError:\n"
                "        pass\n"
                "import sys\n"
            ),
        },
    )
    lazy = {found.line: found.explained for found in all_imports(tree) if found.lazy}
    assert lazy == {2: True, 5: True, 6: True, 8: False, 10: False, 12: False}


# -- the project ---------------------------------------------------------------------------------------------------


def test_the_project_has_no_import_cycle_lazy_imports_included() -> None:
    found = cycles(list(project_imports()))
    assert not found, "import cycles: " + "; ".join(_named(path) for path in found)


def test_every_import_inside_a_function_says_why_it_is_lazy() -> None:
    unexplained = sorted(
        {
            f"{REPO_RELATIVE[found.module]}:{found.line}"
            for found in project_imports()
            if found.lazy and not found.explained
        }
    )
    assert not unexplained, "function-level imports without a `# lazy: <why>` comment: " + ", ".join(unexplained)


REPO_RELATIVE = {module: str(path.relative_to(REPO)) for module, path in module_files().items()}


@pytest.mark.parametrize("module", ["app", "chalicelib.aws", "chalicelib.wiring", "chalicelib.local_executor"])
def test_the_service_side_modules_import_nothing_that_imports_them_back(module: str) -> None:
    """The two cycles issue 16 named: app -> aws -> service -> orchestrator -> aws, orchestrator -> local_executor
    -> app. aws makes clients only (config is all it imports of ours); nothing of chalicelib imports app."""
    imports = project_imports()
    ours = {found.target for found in imports if found.module == module and found.target}
    if module == "chalicelib.aws":
        assert ours == {"chalicelib.config"}
    assert not any(found.target == "app" for found in imports if found.module.startswith("chalicelib"))


HEAVY = {"pandas", "numpy", "sklearn", "scipy", "lightgbm", "matplotlib", "pyarrow"}


def top_level_names(file: Path) -> set[str]:
    """The top-level package of every import in `file`, at any depth (TYPE_CHECKING ones included: none is needed)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_the_lambda_package_stays_light_and_the_runner_never_imports_the_app() -> None:
    files = module_files()
    heavy = {module: sorted(top_level_names(file) & (HEAVY | {"runner"})) for module, file in files.items()}
    assert {module: names for module, names in heavy.items() if module.startswith("chalicelib") and names} == {}
    assert [
        module for module, file in files.items() if module.startswith("runner") and "app" in top_level_names(file)
    ] == []
