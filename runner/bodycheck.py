"""Taking a model body out of an LLM's answer and checking it before it runs (first layer; the sandbox is the second).

A body is Python source for the model-body contract (runner/contract.py): `build_model(task)` and optionally
`add_features(df)`. It may import only numerical and modelling libraries, and may not reach files, processes, the
network, the interpreter's internals or dynamic code: no `os`/`sys`/`subprocess`/`socket`/`shutil`/`importlib`/`ctypes`,
no `open`/`eval`/`exec`/`__import__`/`getattr`, no dunder attributes or names, no file readers/writers of pandas/numpy.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

ALLOWED_MODULES = frozenset(
    {
        "numpy",
        "pandas",
        "scipy",
        "sklearn",
        "lightgbm",
        "math",
        "statistics",
        "random",
        "itertools",
        "functools",
        "collections",
        "dataclasses",
        "typing",
        "numbers",
        "enum",
        "abc",
        "re",
        "datetime",
        "time",
        "warnings",
        "copy",
        "heapq",
        "bisect",
        "decimal",
        "fractions",
        "__future__",
    }
)
# Submodules of allowed packages that reach files, C code or compilers.
FORBIDDEN_SUBMODULES = (
    "numpy.ctypeslib",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.lib.format",
    "numpy.lib.npyio",
    "numpy.testing",
    "pandas.io",
    "scipy.io",
    "sklearn.datasets",  # file loaders and network fetchers
    "sklearn.externals",
)
FORBIDDEN_NAMES = frozenset(
    {
        "open",
        "eval",
        "exec",
        "compile",
        "__import__",
        "getattr",
        "setattr",
        "delattr",
        "globals",
        "locals",
        "vars",
        "input",
        "breakpoint",
        "exit",
        "quit",
        "help",
        "memoryview",
        "__builtins__",
    }
)
# Attributes of allowed libraries that read or write files, run code from strings or load pickles.
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "load",
        "loads",
        "loadtxt",
        "fromfile",
        "tofile",
        "genfromtxt",
        "fromregex",
        "save",
        "savez",
        "savez_compressed",
        "savetxt",
        "memmap",
        "DataSource",
        "ctypeslib",
        "f2py",
        "eval",
        "query",
        "system",
        "popen",
        "dump",
        "dumps",
        "to_pickle",
        "to_csv",
        "to_parquet",
        "to_json",
        "to_excel",
        "to_hdf",
        "to_sql",
        "to_feather",
        "to_clipboard",
        "to_html",
        "to_latex",
        "to_markdown",
        "to_xml",
        "to_stata",
        "to_orc",
        "format_map",
        "get_type_hints",
        "ForwardRef",
        "get_field",
    }
)
ALLOWED_DUNDER_ATTRIBUTES = frozenset({"__init__"})  # super().__init__(...) in a custom estimator
REQUIRED_FUNCTION = "build_model"
OPTIONAL_FUNCTIONS = ("add_features",)

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
_FORMAT_DUNDER = re.compile(r"[.\[]__\w+__")  # "{0.__class__}", "{0[__builtins__]}"
INTROSPECTION_DUNDERS = frozenset(
    {
        "__class__",
        "__bases__",
        "__base__",
        "__mro__",
        "__subclasses__",
        "__globals__",
        "__builtins__",
        "__import__",
        "__dict__",
        "__code__",
        "__closure__",
        "__func__",
        "__self__",
        "__getattribute__",
        "__getattr__",
        "__setattr__",
        "__delattr__",
        "__reduce__",
        "__reduce_ex__",
        "__loader__",
        "__spec__",
        "__init_subclass__",
        "__new__",
        "__call__",
        "__module__",
        "__qualname__",
        "__defaults__",
        "__kwdefaults__",
    }
)


@dataclass(frozen=True)
class BodyCheck:
    ok: bool
    problems: tuple[str, ...]

    @property
    def message(self) -> str:
        return "; ".join(self.problems)


def extract_code(text: str) -> str:
    """The body from an answer: the fenced block that defines build_model (else the longest), else the whole text.

    Handles ```python fences, bare ``` fences, an unterminated fence (a truncated answer) and <think> blocks.
    """
    text = _THINK.sub("", text or "").strip()
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "python", "py", "python3")]
    if not blocks:
        return text.strip() + "\n" if text.strip() else ""
    defining = [b for b in blocks if f"def {REQUIRED_FUNCTION}" in b]
    chosen = max(defining or blocks, key=len)
    return chosen.strip() + "\n"


def check_body(source: str) -> BodyCheck:
    """Compile and inspect a body; every problem found is named with its line."""
    if not source.strip():
        return BodyCheck(False, ("the answer holds no code",))
    try:
        tree = ast.parse(source, filename="body.py")
        compile(tree, "body.py", "exec")
    except SyntaxError as exc:
        return BodyCheck(False, (f"SyntaxError at line {exc.lineno}: {exc.msg}",))
    problems = [*_forbidden_constructs(tree), *_missing_functions(tree)]
    return BodyCheck(not problems, tuple(dict.fromkeys(problems)))


def _forbidden_constructs(tree: ast.AST) -> list[str]:  # noqa: PLR0912 - one flat list of rules reads best
    problems: list[str] = []
    literal_getattr = _literal_getattr_names(tree)
    for node in ast.walk(tree):
        if node in literal_getattr:
            continue
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Import):
            problems += [
                f"line {line}: import of {a.name!r} is not allowed" for a in node.names if not _allowed(a.name)
            ]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level or not _allowed(module):
                problems.append(f"line {line}: import from {module or '.'!r} is not allowed")
            else:
                problems += [
                    f"line {line}: import of {module}.{a.name} is not allowed"
                    for a in node.names
                    if a.name == "*" or a.name in FORBIDDEN_ATTRIBUTES or not _allowed(f"{module}.{a.name}")
                ]
        elif isinstance(node, ast.Name) and (node.id in FORBIDDEN_NAMES or _is_dunder(node.id)):
            problems.append(f"line {line}: use of {node.id!r} is not allowed")
        elif isinstance(node, ast.Attribute):
            attr = node.attr
            if (_is_dunder(attr) and attr not in ALLOWED_DUNDER_ATTRIBUTES) or attr in FORBIDDEN_ATTRIBUTES:
                problems.append(f"line {line}: attribute {attr!r} is not allowed")
            elif attr.startswith("read_"):
                problems.append(f"line {line}: reading files ({attr}) is not allowed: the scaffold gives you the data")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _names_escape(node.value):
            problems.append(f"line {line}: the string {_short(node.value)!r} names something not allowed")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name.startswith("__"):
            if node.name not in ALLOWED_DUNDER_ATTRIBUTES:
                problems.append(f"line {line}: defining {node.name!r} is not allowed")
        elif isinstance(node, ast.AsyncFunctionDef | ast.Await | ast.AsyncFor | ast.AsyncWith):
            problems.append(f"line {line}: async code is not allowed")
        elif isinstance(node, ast.Global | ast.Nonlocal):
            problems.append(f"line {line}: global/nonlocal is not allowed")
    return problems


def _literal_getattr_names(tree: ast.AST) -> set[ast.AST]:
    """`getattr(task, "n_jobs", 2)` with a plain literal name is an attribute access like any other: allow it."""
    allowed: set[ast.AST] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) in (2, 3)
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and node.args[1].value.isidentifier()
            and not node.args[1].value.startswith("_")
            and not _names_escape(node.args[1].value)
            and not node.args[1].value.startswith("read_")
        ):
            allowed.add(node.func)
    return allowed


def _missing_functions(tree: ast.Module | ast.AST) -> list[str]:
    body = getattr(tree, "body", [])
    functions = {n.name: n for n in body if isinstance(n, ast.FunctionDef)}
    problems = []
    build = functions.get(REQUIRED_FUNCTION)
    if build is None:
        problems.append(f"the required top-level function `def {REQUIRED_FUNCTION}(task)` is missing")
    elif not (build.args.args or build.args.vararg):
        problems.append(f"`{REQUIRED_FUNCTION}` must take the task as its argument")
    for name in OPTIONAL_FUNCTIONS:
        fn = functions.get(name)
        if fn is not None and not (fn.args.args or fn.args.vararg):
            problems.append(f"`{name}` must take the DataFrame as its argument")
    return problems


def _allowed(module: str) -> bool:
    if any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN_SUBMODULES):
        return False
    return module.split(".", maxsplit=1)[0] in ALLOWED_MODULES


def _names_escape(text: str) -> bool:
    """Strings that name an escape, for APIs that look names up (df.apply("..."), str.format fields).

    A dunder-looking fill value such as "__missing__" is fine; "{0.__class__}" and "__globals__" are not.
    """
    word = text.strip()
    return (
        bool(_FORMAT_DUNDER.search(text))
        or word in INTROSPECTION_DUNDERS
        or word in FORBIDDEN_ATTRIBUTES
        or word in FORBIDDEN_NAMES
    )


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and len(name) > 4
