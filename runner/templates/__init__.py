"""Template model bodies: plain modules that follow runner.contract, the offline default and the LLM's fallback.

Each file is loaded from its source text (so the code trace shows exactly what ran). `TEMPLATES` lists them in the
order the pipeline tries them (runner/templates/manifest.py, with each one's time share and libraries): the quick
linear model first (a baseline in seconds), then gradient boosting, then the models that differ from it most (a
neural net, kernels, a second booster, randomised trees). The text templates
(TF-IDF n-grams in a linear model, and LightGBM stacked on it) run only when the data has free text; which of the rest
run, and on how many rows, follows the data's shape and the memory ceiling (runner.shape).
"""

from __future__ import annotations

from importlib import resources

from runner.contract import ModelBody, load_body_from_source
from runner.templates.manifest import MANIFEST

TEMPLATES = tuple(entry.name for entry in MANIFEST)
TEXT_TEMPLATES = tuple(entry.name for entry in MANIFEST if entry.text)


def template_source(name: str) -> str:
    if name not in TEMPLATES:
        raise KeyError(f"unknown template {name!r}; templates: {', '.join(TEMPLATES)}")
    return resources.files(__package__).joinpath(f"{name}.py").read_text(encoding="utf-8")


def load_template(name: str) -> ModelBody:
    return load_body_from_source(template_source(name), name)
