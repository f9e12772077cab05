"""The templates, one entry each: name (its file here is `<name>.py`), time share and the libraries it imports.

The order is the order the pipeline tries them (runner.shape may move some first for the data's shape): the quick
linear model first (a baseline in seconds), then gradient boosting, then the models that differ from it most.

`time_share` is the share of the time left until the templates' deadline that one template's CV may use (it is told
its fit's part of that as `task.fit_seconds`); the shares need not add up to one: a template that finishes early
leaves its time to the next. `libraries` are the third-party modules (import names) its source imports:
tests/test_templates.py checks them against the source, runner/bodycheck.py's allowlist and
runner/requirements.txt. `text` marks the templates that run only on data with free text.

Adding a template: its file here, an entry below; runner/shape.py's `fit_memory_mb` estimates its memory (a default
applies otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TemplateEntry:
    name: str
    time_share: float
    libraries: tuple[str, ...]
    text: bool = False


MANIFEST: tuple[TemplateEntry, ...] = (
    TemplateEntry("linear", 0.25, ("numpy", "sklearn")),
    TemplateEntry("text_linear", 0.5, ("numpy", "sklearn"), text=True),
    TemplateEntry("lightgbm_gbdt", 0.6, ("lightgbm", "numpy", "pandas", "scipy", "sklearn")),
    TemplateEntry("text_boost", 0.6, ("lightgbm", "numpy", "pandas", "sklearn"), text=True),
    TemplateEntry("mlp", 0.5, ("numpy", "sklearn")),
    TemplateEntry("kernel_svm", 0.35, ("numpy", "sklearn")),
    TemplateEntry("hist_gradient_boosting", 0.6, ("sklearn",)),
    TemplateEntry("extra_trees", 1.0, ("numpy", "sklearn")),
)
_BY_NAME = {entry.name: entry for entry in MANIFEST}


def entry(name: str) -> TemplateEntry:
    """The manifest entry of template `name`; KeyError naming the templates if there is none."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown template {name!r}; templates: {', '.join(_BY_NAME)}") from None
