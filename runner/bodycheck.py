"""Taking a model body out of an LLM's answer and checking it before it runs: a quick early refusal, not the wall.

A body is Python source for the model-body contract (runner/contract.py): `build_model(task)` and optionally
`add_features(df)`. The check is an ALLOWLIST, so that what it does not know is refused:

- imports only from `ALLOWED_MODULES` (numpy, pandas, scikit-learn, LightGBM, a subset of SciPy and a few pure
  standard-library helpers), and from a few modules only the names listed for them;
- no name, attribute, argument or keyword that starts with `_` (except `_` itself and `__init__`, which a custom
  estimator needs);
- no attribute that reaches a module outside the allowlist (`x.sys`, `x.os`, `x.builtins`, `x.lib`, `x.io`, ...:
  `MODULE_ATTRIBUTES`, every module-valued public attribute of the allowed modules and their classes whose module is not
  allowed, checked against the installed libraries by tests/test_codegen_check.py), nor one that reads or writes files,
  loads native code or runs code from strings (`REFUSED_ATTRIBUTES`);
- only the builtins a model needs (`ALLOWED_BUILTINS`: no open/exec/eval/compile/getattr/setattr/globals/vars/
  __import__/breakpoint/input ...);
- no strings that name a dunder or a refused attribute, no `str.format` on a built string or with attribute fields,
  no built strings handed to pandas' name-dispatching methods (`agg`, `transform`, `apply`).

Every problem is one line naming the construct and its line: the repair loop feeds them back to the LLM. The wall
that holds when this check is walked around is the operating system (runner/confine.py); see docs/sandbox.md.
"""

from __future__ import annotations

import ast
import builtins
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass


def _words(text: str) -> list[str]:
    return text.split()


# Modules a body may import. None: any public, non-refused name; a set: only those names.
ALLOWED_MODULES: dict[str, frozenset[str] | None] = {
    "numpy": None,
    "numpy.linalg": None,
    "numpy.random": None,
    "numpy.fft": None,
    "pandas": None,
    "pandas.api": None,
    "pandas.api.types": None,
    "sklearn": None,  # and its public submodules, except SKLEARN_REFUSED
    "lightgbm": None,
    "lightgbm.callback": None,
    "scipy": None,
    "scipy.stats": None,
    "scipy.special": None,
    "scipy.sparse": None,
    "scipy.sparse.linalg": None,
    "scipy.optimize": None,
    "scipy.linalg": None,
    "scipy.interpolate": None,
    "scipy.spatial": None,
    "scipy.spatial.distance": None,
    "scipy.signal": None,
    "scipy.cluster": None,
    "scipy.cluster.hierarchy": None,
    "scipy.cluster.vq": None,
    "scipy.fft": None,
    "scipy.ndimage": None,
    "math": None,
    "statistics": None,
    "random": None,
    "itertools": None,
    "functools": None,
    "collections": None,
    "collections.abc": None,
    "copy": None,
    "time": None,
    "warnings": None,
    "__future__": frozenset({"annotations"}),
    "typing": frozenset(
        {"Any", "Optional", "Union", "List", "Dict", "Tuple", "Set", "Sequence", "Iterable", "Mapping", "Callable"}
    ),
}
# scikit-learn submodules that load or fetch files, vendor other packages, or exist for tests.
SKLEARN_REFUSED = (
    "sklearn.datasets",
    "sklearn.externals",
    "sklearn.conftest",
    "sklearn.utils.estimator_checks",
    "sklearn.utils.discovery",
    "sklearn.utils.fixes",
)

# Public attributes of the allowed modules (and of their classes) whose value is a module outside the allowlist,
# plus the modules that must never be reached from anywhere. Computed from the installed libraries by
# tests/test_codegen_check.py::test_module_valued_attributes_of_allowed_modules_are_all_listed.
MODULE_ATTRIBUTES = frozenset(
    _words(
        """
        abc add_newdocs arrays cow basic biasedurn bit_generator blas bsplines bsr char ckdtree cobyla compat
        compressed constants construct contingency coo core csc csgraph csr ctypeslib cython_blas
        cython_lapack cython_special dask dataclasses datasets decomp decomp_cholesky decomp_lu decomp_qr
        decomp_schur decomp_svd dia differentiate discovery dok dsolve eigen emath engine exceptions
        executors extensions externals f2py fftpack filter_design filters fir_filter_design fitpack fitpack2
        fixes fourier indexers inspect integrate interchange interface internals interpnd interpolation
        interpolative io isolve joblib kde kdtree lapack lbfgsb lib libpath lil linesearch lti_conversion
        ltisys ma matfuncs measurements minpack minpack2 misc moduleTNC morestats morphology mstats_basic
        mstats_extras mtrand mvn ndgriddata nonlin numbers nw odr offsets operator orthogonal platform
        plotting polynomial qhull qmc rbf re rec rotation sf_error signaltools sklearn slsqp sparsetools
        specfun special_matrices spectral spfun_stats spline sputils strings sys testing tests tnc tseries
        typing unicodedata util waveforms wavelets xpx os posix nt builtins ctypes importlib subprocess
        socket shutil pickle marshal signal threading multiprocessing mmap gc code codeop runpy pathlib
        tempfile glob resource fcntl selectors asyncio concurrent atexit faulthandler traceback linecache
        sysconfig site pty tty termios ssl http urllib zipimport pkgutil copyreg weakref ctypeslib cffi
        numba cloudpickle loky dill
        """
    )
)
# Module-valued attributes whose names are also everyday API (np.zeros, df.dtypes, np.select, s.str.extract,
# pipeline.transform, np.array, ...): not refused by name; the modules behind them hold nothing a body could misuse and
# are walked like allowed ones by the test that computes MODULE_ATTRIBUTES.
FOLLOWED_MODULE_ATTRIBUTES = frozenset(
    _words(
        """
        array base bisect data distributions dtypes errors extract interpolate mstats optimize polyint select stats
        transform windows zeros
        """
    )
)
# Attributes that read or write files, load native code, or run code from strings (plus every `read_*`).
REFUSED_ATTRIBUTES = frozenset(
    _words(
        """
        load loads loadtxt fromfile tofile genfromtxt fromregex save savez savez_compressed savetxt memmap
        open_memmap DataSource dump dumps to_pickle to_csv to_parquet to_json to_excel to_hdf to_sql
        to_feather to_clipboard to_html to_latex to_markdown to_xml to_stata to_orc to_string get_handle
        HDFStore ExcelWriter ExcelFile style save_model load_model save_binary save_npz load_npz mmwrite
        mmread savemat loadmat savefig eval query system popen spawn format_map get_type_hints ForwardRef
        evaluate_forward_ref LowLevelCallable CDLL cdll PyDLL pydll dlopen handle
        """
    )
)
# Keyword arguments (and string keys) that make LightGBM or scikit-learn open files or network connections.
REFUSED_KEYWORDS = frozenset(
    _words(
        """
        machines machine_list_filename machine_list_file mlist local_listen_port local_port num_machines
        output_model model_output model_out input_model model_input model_in save_binary output_result
        convert_model forcedsplits_filename forcedbins_filename init_model model_file filename memory
        """
    )
)
ALLOWED_BUILTINS = frozenset(
    _words(
        """
        abs all any bin bool bytearray callable classmethod complex dict divmod enumerate filter float format
        frozenset hasattr hash hex id int isinstance issubclass iter len list map max min next object oct
        ord pow print property range repr reversed round set slice sorted staticmethod str sum super tuple
        type zip True False None NotImplemented Ellipsis
        """
    )
)
REFUSED_BUILTINS = frozenset(
    name
    for name in dir(builtins)
    if not name.startswith("_")
    and name not in ALLOWED_BUILTINS
    and not name.endswith(("Error", "Exception", "Warning", "Exit", "Interrupt", "Iteration", "Group"))
)
KNOWN_DUNDERS = frozenset(
    name
    for obj in (object, type, type(len), type(lambda: 0), type(builtins), builtins, BaseException, dict, str, int)
    for name in dir(obj)
    if name.startswith("__") and name.endswith("__")
) | frozenset({"__builtins__", "__globals__", "__code__", "__closure__", "__import__", "__loader__", "__spec__"})
ALLOWED_PRIVATE = frozenset({"_", "__init__"})  # `for _ in ...`; a custom estimator's __init__ and super().__init__
NAME_DISPATCH_METHODS = frozenset({"agg", "aggregate", "transform", "apply"})  # pandas looks a string up as a method
REQUIRED_FUNCTION = "build_model"
OPTIONAL_FUNCTIONS = ("add_features",)

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
_DUNDER = re.compile(r"__[A-Za-z]\w*__")
_FIELD_REACH = re.compile(r"\{[^{}]*[.\[]\s*_")  # "{0.__class__}", "{0._x", "{0[__builtins__]"


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
    problems = [*sorted(_refusals(tree), key=_line_number), *_missing_functions(tree)]
    return BodyCheck(not problems, tuple(dict.fromkeys(problems)))


def allowed_module(module: str) -> bool:
    """Whether `import module` is allowed."""
    if module in ALLOWED_MODULES:
        return True
    parts = module.split(".")
    return (
        parts[0] == "sklearn"
        and not any(p.startswith("_") or p == "tests" for p in parts)
        and not any(module == bad or module.startswith(bad + ".") for bad in SKLEARN_REFUSED)
    )


def importable_whole(module: str) -> bool:
    """Whether `import module` (the whole module, reachable by attribute) is allowed."""
    return allowed_module(module) and ALLOWED_MODULES.get(module) is None


def allowed_imports_text() -> str:
    """The allowlist in words, for the contract the LLM is shown."""
    plain = sorted(m for m, names in ALLOWED_MODULES.items() if names is None and not m.startswith("sklearn"))
    limited = [f"{m} ({', '.join(sorted(names))})" for m, names in sorted(ALLOWED_MODULES.items()) if names]
    refused = ", ".join(SKLEARN_REFUSED[:2])
    return f"sklearn and its public submodules (not {refused}); " + ", ".join(plain) + "; from " + ", ".join(limited)


def _line_number(problem: str) -> int:
    return int(problem.split(":", 1)[0].removeprefix("line ").strip() or 0)


def _refusals(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        for problem in _node_problems(node):
            yield f"line {line}: {problem}"


def _node_problems(node: ast.AST) -> Iterator[str]:  # noqa: PLR0912 - one flat dispatch over node kinds
    yield from _identifier_problems(node)
    if isinstance(node, ast.Import):
        for alias in node.names:
            if not allowed_module(alias.name):
                yield f"import of {alias.name!r} is not allowed"
            elif not importable_whole(alias.name):
                yield f"import of {alias.name!r} is not allowed (use `from {alias.name} import ...`)"
    elif isinstance(node, ast.ImportFrom):
        yield from _import_from_problems(node)
    elif isinstance(node, ast.Name) and node.id in REFUSED_BUILTINS:
        yield f"use of {node.id!r} is not allowed (builtins outside the allowlist)"
    elif isinstance(node, ast.Attribute):
        yield from _attribute_problems(node.attr)
    elif isinstance(node, ast.keyword) and node.arg in REFUSED_KEYWORDS:
        yield f"keyword {node.arg!r} is not allowed (it makes a library open files or connections)"
    elif isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        yield from _string_problems(node.value)
    elif isinstance(node, ast.Call):
        yield from _call_problems(node)
    elif isinstance(node, ast.Dict):
        yield from (
            f"the key {k.value!r} is not allowed (a parameter that opens files or connections)"
            for k in node.keys
            if isinstance(k, ast.Constant) and k.value in REFUSED_KEYWORDS
        )
    elif isinstance(node, ast.ClassDef) and node.keywords:
        yield f"class {node.name!r}: class keywords (metaclass=...) are not allowed"
    elif isinstance(node, ast.AsyncFunctionDef | ast.Await | ast.AsyncFor | ast.AsyncWith):
        yield "async code is not allowed"
    elif isinstance(node, ast.Global | ast.Nonlocal):
        yield "global/nonlocal is not allowed"


def _identifier_problems(node: ast.AST) -> Iterator[str]:
    for kind, name in _identifiers(node):
        if name.startswith("_") and name not in ALLOWED_PRIVATE:
            yield f"{kind} {name!r} is not allowed (names starting with '_' are private)"


def _identifiers(node: ast.AST) -> Iterator[tuple[str, str]]:  # noqa: PLR0912 - a table of node kinds
    if isinstance(node, ast.Name):
        yield "name", node.id
    elif isinstance(node, ast.Attribute):
        yield "attribute", node.attr
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        yield "definition", node.name
    elif isinstance(node, ast.arg):
        yield "argument", node.arg
    elif isinstance(node, ast.keyword) and node.arg:
        yield "keyword", node.arg
    elif isinstance(node, ast.alias):
        for part in node.name.split("."):
            if part != "__future__":
                yield "imported name", part
        if node.asname:
            yield "imported name", node.asname
    elif isinstance(node, ast.ImportFrom) and node.module:
        for part in node.module.split("."):
            if part != "__future__":
                yield "module", part
    elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
        yield "name", node.name
    elif isinstance(node, ast.MatchMapping) and node.rest:
        yield "name", node.rest
    elif isinstance(node, ast.MatchClass):
        for attr in node.kwd_attrs:
            yield "attribute", attr


def _import_from_problems(node: ast.ImportFrom) -> Iterator[str]:
    module = node.module or ""
    if node.level or not allowed_module(module):
        yield f"import from {module or '.'!r} is not allowed"
        return
    names = ALLOWED_MODULES.get(module)
    for alias in node.names:
        full = f"{module}.{alias.name}"
        if alias.name == "*":
            yield f"import of {full} is not allowed (name what you import)"
        elif allowed_module(full):
            continue
        elif names is not None and alias.name not in names:
            yield f"import of {full} is not allowed (from {module} only: {', '.join(sorted(names))})"
        elif not alias.name.startswith("_"):
            yield from (f"import of {full}: {p}" for p in _attribute_problems(alias.name))


def _attribute_problems(attr: str) -> Iterator[str]:
    if attr in MODULE_ATTRIBUTES:
        yield f"attribute {attr!r} is not allowed (it reaches a module outside the allowlist)"
    elif attr in REFUSED_ATTRIBUTES:
        yield f"attribute {attr!r} is not allowed (files, native code or code from strings)"
    elif attr.startswith("read_"):
        yield f"attribute {attr!r} is not allowed: reading files is not, the scaffold gives you the data"


def _string_problems(value: str | bytes) -> Iterator[str]:
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if _names_dunder(text.strip()):
        yield f"the string {_short(text)!r} is not allowed (it names or spells part of a dunder)"
    elif _FIELD_REACH.search(text) or _format_fields_reach_attributes(text):
        yield f"the format string {_short(text)!r} is not allowed (attribute or index fields)"


def _names_dunder(word: str) -> bool:
    """A full dunder anywhere, or a piece of a known one split across literals ("__cla" + "ss__")."""
    if _DUNDER.search(word):
        return True
    if len(word) < 3:  # "__" alone joins column names ("date__year")
        return False
    return (word.startswith("__") and any(d.startswith(word) for d in KNOWN_DUNDERS)) or (
        word.endswith("__") and any(d.endswith(word) for d in KNOWN_DUNDERS)
    )


def _call_problems(node: ast.Call) -> Iterator[str]:
    func = node.func
    if not isinstance(func, ast.Attribute):
        return
    if func.attr == "format" and not (isinstance(func.value, ast.Constant) and isinstance(func.value.value, str)):
        yield "str.format on a built string is not allowed (use an f-string)"
    elif func.attr in NAME_DISPATCH_METHODS:
        dispatched = [*node.args[:1], *(k.value for k in node.keywords if k.arg in (None, "func"))]
        for value in dispatched:
            yield from _dispatch_problems(func.attr, value)


def _dispatch_problems(method: str, value: ast.expr) -> Iterator[str]:
    """`df.agg(name)` looks `name` up as a method of df: only literal names, never built strings."""
    if isinstance(value, ast.JoinedStr | ast.BinOp) or (
        isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr in ("join", "format")
    ):
        yield f".{method}() with a built string is not allowed (pass a function or a literal name like 'mean')"
    elif isinstance(value, ast.Constant) and isinstance(value.value, str):
        name = value.value.strip()
        if name.startswith("_") or name.startswith("read_") or name in REFUSED_ATTRIBUTES | MODULE_ATTRIBUTES:
            yield f".{method}({name!r}) is not allowed (it names a private or refused method)"
    elif isinstance(value, ast.List | ast.Tuple | ast.Set):
        for element in value.elts:
            yield from _dispatch_problems(method, element)
    elif isinstance(value, ast.Dict):
        for element in value.values:
            yield from _dispatch_problems(method, element)


def _format_fields_reach_attributes(text: str) -> bool:
    if "{" not in text:
        return False
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f]
    except ValueError:
        return False
    return any("." in f or "[" in f for f in fields)


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


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."
