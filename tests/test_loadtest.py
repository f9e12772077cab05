"""The load runner: its arithmetic and checks (fast), and a short bounded load against the real local stack (slow)."""

from __future__ import annotations

import json

import pytest

from loadtest import fanout


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert [fanout.percentile(values, p) for p in (0.5, 0.95, 0.99)] == [50.0, 95.0, 99.0]
    assert fanout.percentile([7.0], 0.99) == 7.0
    assert fanout.percentile([], 0.5) == 0.0


@pytest.mark.parametrize(
    ("headers", "body", "clean"),
    [
        ({"Retry-After": "60"}, b'{"error": "all 2 run slots are in use; retry later"}', True),
        ({}, b'{"error": "all 2 run slots are in use"}', False),
        ({"Retry-After": "0"}, b'{"error": "x"}', False),
        ({"Retry-After": "60"}, b"<html>Too Many Requests</html>", False),
        ({"Retry-After": "60"}, b'{"message": "x"}', False),
    ],
)
def test_a_clean_429_has_a_json_error_and_a_retry_after(headers, body, clean):
    assert fanout.is_clean_429(headers, body) is clean


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000", "https://127.0.0.1:8000", "http://example.com", "ftp://[::1]"])
def test_only_loopback_http_is_a_target(url):
    with pytest.raises(fanout.LoadError, match="on this machine"):
        fanout.check_loopback(url)
    fanout.check_loopback("http://127.0.0.1:8000")


@pytest.mark.parametrize(
    "argv",
    [["--rates", "10,x"], ["--rates", "0"], ["--stage-seconds", "500"], ["--rates", "5000", "--stage-seconds", "60"]],
)
def test_unbounded_or_malformed_load_is_refused(argv, capsys):
    with pytest.raises(SystemExit):
        fanout.parse_args(argv)
    assert "--" in capsys.readouterr().err


def result(kind, status, rate=10, clean=None):
    return fanout.Result(kind, rate, status, 0.01, 0.0, clean_429=clean, error=None if status else "refused")


def test_the_judge_flags_5xx_no_answers_unclean_429s_overadmission_and_unfinished_runs():
    report = fanout.Report("http://127.0.0.1:1", max_running=2, stage_seconds=1, admitted=3, unclean_429=1)
    report.max_in_flight_counter = 3
    report.not_terminal = ["r1"]
    report.slots_held_at_end = 1
    fanout.judge(report, [result("post", 503), result("get", 0), result("post", 400), result("post", 429, clean=False)])
    text = " ".join(report.problems)
    for expected in ("answered 503", "no answer", "answered 400", "lacked", "exceeded", "not terminal", "still held"):
        assert expected in text, (expected, text)


def test_the_judge_passes_a_clean_run():
    report = fanout.Report("http://127.0.0.1:1", max_running=2, stage_seconds=1, admitted=2)
    report.max_in_flight_counter = report.max_runs_holding_slots = 2
    report.slots_held_at_end = 0
    fanout.judge(report, [result("post", 202), result("post", 429, clean=True), result("get", 200), result("get", 404)])
    assert report.problems == []


def test_stage_figures_count_statuses_and_error_rate():
    results = [result("post", 202), result("post", 429, clean=True), result("post", 500), result("post", 0)]
    stage = fanout.figures(results, "post", 10)
    assert stage.sent == 4
    assert stage.by_status == {"202": 1, "429": 1, "500": 1, "no answer": 1}
    assert stage.error_rate == 0.5


@pytest.mark.slow
def test_short_load_on_the_local_stack_holds_the_slot_limit_and_every_run_ends(tmp_path, capsys):
    """10, 25 and 50 req/s for 2 s each against scripts/local_stack.py with KAGENT_MAX_RUNNING=2 (about 40 s)."""
    out = tmp_path / "load.json"
    argv = ["--start-stack", "--stage-seconds", "2", "--max-running", "2", "--drain-seconds", "120"]
    code = fanout.main([*argv, "--json-out", str(out)])
    printed = capsys.readouterr()
    report = json.loads(out.read_text())
    assert code == 0, printed.out + printed.err
    assert report["problems"] == []
    assert [stage["sent"] for stage in report["post"]] == [20, 50, 100]
    assert all(set(stage["by_status"]) <= {"202", "429"} for stage in report["post"])
    assert all(set(stage["by_status"]) <= {"200", "404"} for stage in report["get"])
    assert report["admitted"] >= 1 and report["refused_429"] >= 1 and report["unclean_429"] == 0
    assert report["in_flight_samples"] > 10 and report["max_in_flight_counter"] <= 2
    assert report["max_runs_holding_slots"] <= 2
    assert sum(report["terminal"].values()) == report["admitted"] and report["not_terminal"] == []
    assert report["slots_held_at_end"] == 0
    assert "| 50 | 100 |" in printed.out
