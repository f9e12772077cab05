"""The runner CLI with the AST check accepting everything (test-only): the hostile bodies must reach the OS wall.

Only tests/hostile/launch.py --skip-check runs this. The production code has no switch for it: the replacement is
made here, in this process, on the module the codegen loop calls.
"""

from __future__ import annotations

import runpy

import runner.codegen
from runner.bodycheck import BodyCheck


def accept_everything(source: str) -> BodyCheck:
    return BodyCheck(True, ())


if not callable(getattr(runner.codegen, "check_body", None)):
    raise SystemExit("tests/hostile/cli.py: runner.codegen.check_body is gone; update how the check is bypassed")
runner.codegen.check_body = accept_everything
runpy.run_module("runner", run_name="__main__", alter_sys=True)
