"""This checkout's Chalice app, for the tools that inspect it in-process (openapi.py, bench_api.py).

app.py is Chalice's entry point at the project root, not a package, so it is not installed (a top-level `app` module on
every import path would be a generic name): it is loaded from its file, once, under the name `app` that Chalice and the
tests use, so a process that already imported it gets the same module back.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

APP_PY = Path(__file__).resolve().parent.parent / "app.py"


def app_module(path: Path = APP_PY) -> ModuleType:
    """The `app` module (imported already, or loaded now from `path`)."""
    loaded = sys.modules.get("app")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("app", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"no Chalice app at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["app"]
        raise
    return module
