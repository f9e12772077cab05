"""report.html of a real run: its leaderboard, the charts (decoded: real PNGs with something drawn), the data profile,
the cost and the chosen body's code; then the page opened in headless Chromium, which must show the leaderboard and
both charts with a non-empty size. Chromium comes from Debian (.ci/run installs it); without it that one test skips."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from typing import Any

import pytest

from runner.examples import build_breast_cancer_demo
from runner.pipeline import RunOptions, run_pipeline
from runner.report import FargateTask, ReportCollector, run_cost, write_report

pytestmark = pytest.mark.slow
CHARTS = ("cv-chart-img", "importance-chart-img")
_IMG = re.compile(r'<img id="(?P<id>[a-z-]+)"[^>]*src="data:image/png;base64,(?P<data>[A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("report")
    data = build_breast_cancer_demo(root / "mirror")
    out = root / "out"
    collector = ReportCollector()
    outcome = run_pipeline(data, out, RunOptions(time_budget=25, codegen="template", progress=collector))
    assert outcome.status == "succeeded", outcome.reason
    task = FargateTask(vcpu=1.0, memory_gb=2.0)
    files = write_report(
        out,
        collector,
        slug="breast-cancer-demo",
        run_id="run-1",
        cost=lambda result: run_cost(result, seconds=60.0, task=task),
    )
    assert files is not None
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    return {"out": out, "page": files.report.read_text(encoding="utf-8"), "result": result, "files": files}


def images(page: str) -> dict[str, bytes]:
    return {m["id"]: base64.b64decode(m["data"]) for m in _IMG.finditer(page)}


def test_the_leaderboard_lists_every_candidate_with_its_mean_and_spread_and_marks_the_chosen(run):
    page, result = run["page"], run["result"]
    table = page.split('id="leaderboard"', 1)[1].split("</table>", 1)[0]
    for candidate in result["candidates"]:
        assert f"<td>{candidate['name']}</td>" in table
    assert table.count('<tr class="chosen">') == 1
    assert f"<td>{result['model']}</td>" in table.split('<tr class="chosen">', 1)[1].split("</tr>", 1)[0]
    rows = {row["name"]: row for row in result["leaderboard"]}
    chosen = rows[result["model"]]
    assert chosen["role"] == "chosen" and chosen["cv_std"] is not None and chosen["cv_std"] > 0
    scores = [row["cv_score"] for row in result["leaderboard"]]
    assert scores == sorted(scores, reverse=True)  # accuracy: best first


def test_the_charts_are_real_pngs_with_something_drawn(run):
    from PIL import Image  # noqa: PLC0415 - matplotlib's own dependency

    found = images(run["page"])
    assert set(CHARTS) <= set(found)
    for name in CHARTS:
        picture = Image.open(io.BytesIO(found[name]))
        assert picture.format == "PNG" and picture.width > 300 and picture.height > 150, name
        low, high = picture.convert("L").getextrema()
        assert high - low > 100, f"{name} is blank"
    assert run["files"].chart is not None and run["files"].chart.read_bytes() == found["cv-chart-img"]


def test_the_page_has_the_data_profile_cost_importances_and_the_chosen_code(run):
    page, result = run["page"], run["result"]
    assert "kagent report: breast-cancer-demo" in page and "run-1" in page
    assert f'<td class="num">{result["n_train"]}</td>' in page
    assert "numeric" in page and "benign" in page and "malignant" in page
    assert "vCPU-s" in page and result["cost"]["vcpu_seconds"] == 60.0 and result["cost"]["gb_seconds"] == 120.0
    assert "surrogate" in page and "mean_" in page  # a breast-cancer feature among the top importances
    assert "def build_model" in page  # the chosen body's code
    assert "<script" not in page  # self-contained and static


def test_a_report_from_result_json_alone_escapes_names_and_says_why_importance_is_missing(tmp_path):
    result = {
        "status": "succeeded",
        "metric": "rmse",
        "cv_score": 1.5,
        "model": "<b>evil</b>",
        "candidates": [
            {"name": "<b>evil</b>", "cv_score": 1.5, "folds": 5, "elapsed_s": 1.0, "fold_scores": [1.4, 1.6]},
            {"name": "linear", "cv_score": 2.0, "folds": 5, "elapsed_s": 1.0, "fold_scores": [1.9, 2.1]},
        ],
    }
    (tmp_path / "result.json").write_text(json.dumps(result), encoding="utf-8")

    files = write_report(tmp_path, None, slug="x")

    assert files is not None
    page = files.report.read_text(encoding="utf-8")
    assert "<b>evil</b>" not in page and "&lt;b&gt;evil&lt;/b&gt;" in page
    assert "lower is better" in page
    table = page.split('id="leaderboard"', 1)[1]
    assert table.index("evil") < table.index("linear")  # rmse: lowest first
    assert "not measured" in page
    assert "cv-chart-img" in images(page)


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


PROBE = """<script>
window.addEventListener('load', () => {
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
  const probe = {
    rows: document.querySelectorAll('#leaderboard tbody tr').length,
    table: box(document.querySelector('#leaderboard table')),
    images: Array.from(document.images).map((img) => ({
      id: img.id, complete: img.complete, natural: [img.naturalWidth, img.naturalHeight], shown: box(img) })),
  };
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify(probe);
  document.body.appendChild(out);
});
</script>"""


def test_headless_chromium_shows_the_leaderboard_and_both_charts(run, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium)")
    page = tmp_path / "probed.html"
    page.write_text(run["page"].replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout)
    assert found is not None, done.stderr[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe["rows"] == len(run["result"]["leaderboard"]) and min(probe["table"]) > 0
    shown = {image["id"]: image for image in probe["images"]}
    for name in CHARTS:
        image = shown[name]
        assert image["complete"] and min(image["natural"]) > 100, image
        assert min(image["shown"]) > 100, image


def test_importance_copes_with_a_high_cardinality_category_and_names_the_driving_feature():
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    from runner.report import surrogate_importance  # noqa: PLC0415

    rng = np.random.default_rng(0)
    n = 1200
    X = pd.DataFrame(
        {
            "signal": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "city": pd.Categorical([f"c{i % 400}" for i in range(n)]),  # 400 levels: more than a histogram bins
        }
    )
    positive = 1 / (1 + np.exp(-3 * X["signal"].to_numpy()))
    chosen = type("Chosen", (), {"oof": np.column_stack([1 - positive, positive])})()
    data = type("Data", (), {"X": X})()

    measured = surrogate_importance(data, chosen)

    assert measured is not None
    assert measured.features[0][0] == "signal"
    assert measured.fidelity is not None and measured.fidelity > 0.8
