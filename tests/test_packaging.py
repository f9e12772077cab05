"""Packaging: the lock and the requirements agree and every install goes through its hashes, the console scripts name
real entry points, nothing patches sys.path, and `make help` lists every target."""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib
import importlib.metadata
import inspect
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Run as files by other interpreters or from the root, so no console script: bench_peer.py and bench_extra_comps.py run
# in the peers' and the grader's own environments; bench_api.py imports the checkout's app.py and tests/moto_env.py.
NOT_CONSOLE_SCRIPTS = {"bench_peer", "bench_extra_comps", "bench_api"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(path: Path) -> dict[str, tuple[str, str]]:
    """{name: (version, file)} of every `name==version` line in `path` and the files it includes with -r."""
    pins: dict[str, tuple[str, str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(requirement_pins(path.parent / line.removeprefix("-r ").strip()))
        elif line and not line.startswith("-"):
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;]+)", line)
            assert match, f"{path.relative_to(ROOT)}: {raw!r} is not pinned with =="
            pins[normalized(match.group(1))] = (match.group(3), str(path.relative_to(ROOT)))
    return pins


def lock_entries() -> dict[str, tuple[str, list[str]]]:
    """{name: (version, hashes)} of requirements.lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in LOCK.read_text().splitlines():
        entry = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", line)
        if entry:
            current = normalized(entry.group(1))
            assert current not in entries, f"requirements.lock pins {current} twice"
            entries[current] = (entry.group(2), [])
        elif line.strip().startswith("--hash="):
            entries[current][1].append(line.strip().removeprefix("--hash=").rstrip(" \\"))
    return entries


def test_the_lock_pins_every_requirement_at_the_same_version() -> None:
    locked = lock_entries()
    for name, (version, source) in requirement_pins(ROOT / "requirements-dev.txt").items():
        assert name in locked, f"{source} asks for {name}=={version}, requirements.lock lacks it: run make lock"
        assert locked[name][0] == version, (
            f"{source} pins {name}=={version}, requirements.lock {locked[name][0]}: run make lock"
        )


def test_every_locked_package_carries_sha256_hashes() -> None:
    entries = lock_entries()
    assert len(entries) > 50  # the Lambda's, the runner's and the tools' packages with everything they pull in
    for name, (_, hashes) in entries.items():
        assert hashes, f"requirements.lock: {name} has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name


def test_the_lambda_zip_the_image_and_the_dev_install_all_go_through_the_lock() -> None:
    # chalice package/deploy runs `pip download -r requirements.txt`: the constraint (with its hashes) rides along
    lines = [ln.split("#", 1)[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    assert "-c requirements.lock" in lines
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()
    dockerfile = re.sub(r"\\\n", " ", (ROOT / "runner" / "Dockerfile").read_text())
    install = next(line for line in dockerfile.splitlines() if line.startswith("RUN pip install -r"))
    assert "--require-hashes" in install.split() and "-c /app/requirements.lock" in install
    assert "COPY requirements.lock /app/requirements.lock" in dockerfile
    assert "!requirements.lock" in (ROOT / "runner" / "Dockerfile.dockerignore").read_text().splitlines()


def _wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal valid wheel, so pip can be driven offline."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    files = {
        f"{name}/__init__.py": b"",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(c).digest()).rstrip(b'=').decode()},{len(c)}\n"
        for n, c in files.items()
    )
    with zipfile.ZipFile(path, "w") as archive:
        for n, c in files.items():
            archive.writestr(n, c)
        archive.writestr(f"{name}-{version}.dist-info/RECORD", record + f"{name}-{version}.dist-info/RECORD,,\n")
    return path


def _pip_download(project: Path, wheels: Path) -> subprocess.CompletedProcess[str]:
    """What chalice package does first (`pip download -r requirements.txt`), offline, from `wheels` only."""
    command = [sys.executable, "-m", "pip", "download", "--no-index", "--find-links", str(wheels)]
    return subprocess.run(
        [*command, "-r", "requirements.txt", "--dest", str(project / "out")],
        cwd=project,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_CONSTRAINT": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_file_whose_hash_is_not_in_the_lock_is_refused_as_the_lambda_zip_would(tmp_path: Path) -> None:
    """The layout of requirements.txt (`-c requirements.lock`) puts pip in hash-checking mode: a swapped file, or a
    package the lock does not know, stops the download."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    good = hashlib.sha256(_wheel(wheels, "kagentprobe", "1.0").read_bytes()).hexdigest()
    _wheel(wheels, "kagentextra", "1.0")
    (tmp_path / "requirements.txt").write_text("kagentprobe==1.0\n-c requirements.lock\n")

    (tmp_path / "requirements.lock").write_text(f"kagentprobe==1.0 \\\n    --hash=sha256:{good}\n")
    assert _pip_download(tmp_path, wheels).returncode == 0

    (tmp_path / "requirements.lock").write_text(f"kagentprobe==1.0 \\\n    --hash=sha256:{'0' * 64}\n")
    swapped = _pip_download(tmp_path, wheels)
    assert swapped.returncode != 0 and "DO NOT MATCH THE HASHES" in swapped.stderr

    (tmp_path / "requirements.lock").write_text(f"kagentprobe==1.0 \\\n    --hash=sha256:{good}\n")
    (tmp_path / "requirements.txt").write_text("kagentprobe==1.0\nkagentextra==1.0\n-c requirements.lock\n")
    unlocked = _pip_download(tmp_path, wheels)
    assert unlocked.returncode != 0 and "kagentextra" in unlocked.stderr


def test_every_console_script_is_a_callable_that_needs_no_argument() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts["kagent-runner"] == "runner.__main__:main"
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    for command, target in scripts.items():
        module_name, _, attribute = target.partition(":")
        assert module_name.split(".")[0] in packages, f"{command}: {module_name} is not in a declared package"
        entry = getattr(importlib.import_module(module_name), attribute)
        parameters = inspect.signature(entry).parameters.values()
        assert all(p.default is not inspect.Parameter.empty for p in parameters), f"{command}: {target} needs arguments"


def test_every_runnable_script_is_a_console_script_or_said_why_not() -> None:
    commands = {target.partition(":")[0] for target in PYPROJECT["project"]["scripts"].values()}
    for path in sorted((ROOT / "scripts").glob("*.py")):
        if 'if __name__ == "__main__":' in path.read_text() and path.stem not in NOT_CONSOLE_SCRIPTS:
            assert f"scripts.{path.stem}" in commands, f"scripts/{path.name} runs as a file but has no console script"


def _python_files() -> list[Path]:
    folders = ("chalicelib", "runner", "scripts", "loadtest", "tests")
    return [ROOT / "app.py", *(p for folder in folders for p in sorted((ROOT / folder).rglob("*.py")))]


MUTATORS = {"insert", "append", "extend", "remove", "pop", "clear", "__setitem__", "__iadd__"}


def _patches_the_path(node: ast.AST) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        owner, method = ast.unparse(node.func.value), node.func.attr
        if (owner == "sys.path" and method in MUTATORS) or (owner == "site" and method == "addsitedir"):
            return True
    if isinstance(node, ast.Assign | ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(ast.unparse(t).startswith("sys.path") for t in targets)
    return False


def test_no_module_patches_sys_path() -> None:
    """The packages are installed (make install) and children get an explicit PYTHONPATH: no code edits the path."""
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)[:80]}"
        for path in _python_files()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if _patches_the_path(node)
    ]
    assert not found, "sys.path patched:\n" + "\n".join(found)


def test_the_path_check_sees_a_patch() -> None:
    for code in (
        "sys.path.insert(0, x)",
        "sys.path.append(x)",
        "sys.path = [x]",
        "sys.path += [x]",
        "site.addsitedir(x)",
    ):
        assert any(_patches_the_path(node) for node in ast.walk(ast.parse(code))), code
    assert not any(_patches_the_path(node) for node in ast.walk(ast.parse("paths = {p for p in sys.path}")))


def test_no_other_installed_distribution_claims_our_top_level_names() -> None:
    """`runner` and `scripts` are generic names: another distribution shipping one would shadow ours, or we it."""
    owners = importlib.metadata.packages_distributions()
    for name in ("chalicelib", "runner", "scripts"):
        others = {normalized(d) for d in owners.get(name, [])} - {"kagent"}
        assert not others, f"top-level `{name}` is also installed by {sorted(others)}"


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {
        m.group(1)
        for m in re.finditer(r"^([a-z][a-z0-9-]*):(?!=)", text, re.MULTILINE)
        if not m.group(1).startswith(".")
    }


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_make_help_lists_every_target_with_a_description() -> None:
    done = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
    described = dict(re.findall(r"^  (\S+)\s+(.+)$", done.stdout, re.MULTILINE))
    targets = _makefile_targets()
    assert {"install", "test", "deploy-rehearsal", "lock", "help"} <= targets
    assert targets == set(described), f"missing: {targets - set(described)}; unknown: {set(described) - targets}"
    assert all(len(text) > 10 for text in described.values())
