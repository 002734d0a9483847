"""bench.load end to end, small: two concurrent browser sessions, one walk, on the test demo.

Checks that the benchmark runs and reports every figure (no timing is asserted: this machine's
load decides those; the real figures are in bench/RESULTS.md).
"""

from __future__ import annotations

import pytest

from bench.load.cli import parse_args
from bench.load.report import markdown
from bench.load.run import run_load
from tests.support.live_app import chromium_available

pytestmark = [pytest.mark.slow, pytest.mark.load,
              pytest.mark.skipif(not chromium_available(),
                                 reason="Debian's chromium is not installed (make test installs it when run as root)")]


def test_two_sessions_sign_in_walk_every_page_and_every_figure_is_reported(demo_template, tmp_path):
    args = parse_args(["--sessions", "2", "--walks", "1", "--demo", str(demo_template), "--no-apptest",
                       "--wait-quiet", "0", "--budget", "150", "--step-timeout", "60",
                       "--artifacts", str(tmp_path / "artifacts")])
    report = run_load(args, log=lambda _msg: None)

    assert report["success"] == {"ok": 2, "total": 2, "rate": 1.0, "failures": []}, report["success"]
    assert {s["user"] for s in report["sessions"]} == {"alice", "bob"}  # spread over the demo users
    for name in ("fleet", "drift", "model", "overall"):
        for key in ("render", "complete", "rerun"):
            stats = report["pages"][name][key]
            assert stats["n"] == (6 if name == "overall" else 2), (name, key, stats)
            assert 0 < stats["p50"] <= stats["p95"] <= stats["max"], (name, key, stats)
    assert report["signin"]["n"] == 2 and report["signin"]["p50"] > 0
    for row in (r for s in report["sessions"] for r in s["pages"]):
        assert row["render_s"] <= row["complete_s"], row

    memory = report["memory"]
    assert 0 < memory["idle_mb"] < memory["warm_mb"] <= memory["peak_mb"], memory  # the warm-up imported the app
    assert memory["after_mb"] > 0 and [r["sessions"] for r in memory["rounds"]] == [2]
    assert {"growth_mb", "growth_mb_per_20", "peak_growth_mb_per_20"} <= memory.keys()
    cpu = report["cpu"]
    assert cpu["seconds"] > 0 and cpu["server_core_s"] > 0 and cpu["browser_core_s"] > 0
    assert report["warmup"]["ok"] and len(report["warmup"]["pages"]) == 3
    for phase in ("warmup", "load"):  # the server's own record of its script runs
        runs = report["server_runs"][phase]
        assert runs["wall"]["n"] >= 3 and 0 < runs["cpu"]["p50"] <= runs["wall"]["max"], (phase, runs)
    assert set(report["targets"]) == {"success_rate", "p95_first_render_s", "growth_mb_per_20"}
    assert report["targets"]["success_rate"]["met"]
    assert report["machine"]["cores"] and report["machine"]["chromium"] and report["date"] and report["command"]

    text = markdown(report)
    for needle in ("Success: 2 / 2 sessions (100%)", "| **overall** |", "growth:", "**Targets:**",
                   "Streamlit server process", "Server-side script runs", "Where the time goes"):
        assert needle in text, needle
