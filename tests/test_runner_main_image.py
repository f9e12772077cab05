"""The runner image, checked without a Docker engine: what the Dockerfile copies exists, requirements are pinned,
the build context keeps what is copied, and /app/runner_main.py starts from the image's layout."""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "runner" / "Dockerfile"
DOCKERIGNORE = ROOT / "runner" / "Dockerfile.dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def copies() -> list[tuple[str, str]]:
    return [tuple(args.split()) for op, args in instructions() if op == "COPY"]  # type: ignore[misc]


def in_build_context(path: str) -> bool:
    """Docker's .dockerignore rule, for the patterns used there: the last matching pattern wins."""
    included = True
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        bare = pattern.removeprefix("**/")
        parts = Path(path).parts
        matched = (
            fnmatch.fnmatch(path, pattern)
            or path.startswith(pattern + "/")
            or (pattern.startswith("**/") and any(fnmatch.fnmatch(part, bare) for part in parts))
            or (pattern == "*" and len(parts) >= 1)
        )
        if matched:
            included = negate
    return included


def test_the_base_is_slim_python_3_11_and_the_command_is_the_task_definitions() -> None:
    ops = instructions()
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", next(args for op, args in ops if op == "FROM"))
    assert json.loads(next(args for op, args in ops if op == "CMD")) == ["python", "/app/runner_main.py"]


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    for source, _ in copies():
        assert (ROOT / source).exists(), f"COPY source {source} does not exist"
        files = (
            [source] if (ROOT / source).is_file() else [str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")]
        )
        assert files and all(in_build_context(f) for f in files), f"{source} is excluded by the .dockerignore"
    assert not in_build_context("tests/test_runner_main.py")
    assert not in_build_context(".venv/bin/python")


def test_the_entrypoint_file_is_runner_main_and_the_engine_and_chalicelib_are_copied() -> None:
    targets = dict((dest, source) for source, dest in copies())
    assert targets["/app/runner_main.py"] == "runner/runner_main.py"
    assert targets["/app/runner"] == "runner"
    assert targets["/app/chalicelib"] == "chalicelib"


def test_runner_requirements_are_pinned_and_installed_before_the_code() -> None:
    ops = instructions()
    pip = next(i for i, (op, args) in enumerate(ops) if op == "RUN" and "pip install -r" in args)
    requirement_file = re.search(r"-r\s+/app/(\S+)", ops[pip][1]).group(1)  # type: ignore[union-attr]
    lines = [ln.strip() for ln in (ROOT / requirement_file).read_text().splitlines()]
    requirements = [ln for ln in lines if ln and not ln.startswith("#")]
    assert requirements and all(re.fullmatch(r"[A-Za-z0-9_.\[\],-]+==[\w.]+", r) for r in requirements)
    assert {r.split("==")[0] for r in requirements} >= {"kaggle", "boto3", "pandas", "scikit-learn"}
    first_code_copy = next(i for i, (op, args) in enumerate(ops) if op == "COPY" and "requirements" not in args)
    assert pip < first_code_copy  # the dependency layer survives code changes


def test_generated_code_has_an_unprivileged_sandbox_user() -> None:
    text = DOCKERFILE.read_text()
    useradd = re.search(r"useradd[^\n]*\bsandbox\b", text)
    assert useradd
    assert "--no-create-home" in useradd.group(0) and "nologin" in useradd.group(0)  # owns nothing, no login
    uid = re.search(r"--uid\s+(\d+)", useradd.group(0))
    assert uid and int(uid.group(1)) >= 1000
    assert "KAGENT_SANDBOX_USER=sandbox" in text


def test_the_image_carries_libseccomp_and_pyseccomp_for_the_wall() -> None:
    """runner/confine.py loads its seccomp filter through pyseccomp (ctypes over the system libseccomp2)."""
    apt = [args for op, args in instructions() if op == "RUN" and "apt-get install" in args]
    assert apt and any(re.search(r"\blibseccomp2\b", args) for args in apt)
    requirements = (ROOT / "runner" / "requirements.txt").read_text().split()
    assert any(r.startswith("pyseccomp==") for r in requirements)


def test_the_entrypoint_module_imports() -> None:
    module = importlib.import_module("runner.runner_main")
    assert callable(module.main)


def test_app_runner_main_py_starts_from_the_image_layout(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    for source, dest in copies():
        if dest.startswith("/app/") and source != "runner/requirements.txt":
            target = app / dest.removeprefix("/app/")
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ROOT / source, target)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(app)}

    result = subprocess.run(
        [sys.executable, str(app / "runner_main.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    assert json.loads(result.stdout)["message"].startswith("runner configuration: the runner task needs RUN_ID")


@pytest.mark.parametrize("path", ["runner/runner_main.py", "runner/requirements.txt", "chalicelib/runs.py"])
def test_dockerignore_keeps_what_the_image_needs(path: str) -> None:
    assert in_build_context(path)
