"""The monitoring benchmark's main path at a tiny size: every contender runs and our verdicts are Evidently's.

No speed is asserted here (the machine is shared); bench/RESULTS.md holds the measured figures.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.monitoring.cli import parse_args, run
from bench.monitoring.comparison import drift_agreement, fairness_difference, ratios
from bench.monitoring.contenders import CONTENDERS
from bench.monitoring.data import CATEGORICAL, NUMERICAL, generate
from bench.monitoring.machine import machine
from bench.monitoring.prose import results_markdown
from bench.monitoring.runner import MAIN_SECONDS, SizeResult

pytestmark = pytest.mark.slow  # five child interpreters (one imports Evidently): ~10 s on an idle machine


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[SizeResult], str]:
    folder = tmp_path_factory.mktemp("bench")
    out = folder / "RESULTS.md"
    # Five children at once only to be quick: no timing is asserted.
    options = parse_args(["--rows", "20000", "--repeat", "1", "--no-probe", "--jobs", "5",
                          "--data-dir", str(folder / "data"), "--out", str(out)])
    sizes = run(options)
    out.write_text(results_markdown(sizes, "python -m bench.monitoring --rows 20000", machine(), machine(),
                                    datetime.now(UTC), options))
    return sizes, out.read_text()


def test_every_contender_ran_once_and_reported_its_time_and_memory(results):
    (size,), _ = results
    assert size.rows == 20_000 and size.reference_rows == 4_000
    for contender in CONTENDERS:
        runs = size.ok(contender)
        assert len(runs) == 1, (contender, size.runs[contender])
        assert runs[0][MAIN_SECONDS[contender]] > 0
        assert runs[0]["peak_rss_mib"] >= runs[0]["imports_rss_mib"] > 0
    assert size.median("ours_warm", "rows_current") == 4_000
    assert set(ratios(size)) >= {"evidently_vs_drift_warm", "fairlearn_vs_fairness", "drift_sql_vs_scan"}
    assert all(value is not None for value in ratios(size).values())


def test_our_drift_verdicts_equal_evidentlys_on_the_same_rows(results):
    (size,), _ = results
    rows = drift_agreement(size)
    assert rows is not None and len(rows) == len(NUMERICAL) + len(CATEGORICAL)
    assert [r["column"] for r in rows if not r["agree"]] == []
    drifted = {r["column"] for r in rows if r["drifted"]}
    planted = {n for n, spec in NUMERICAL.items() if spec[3]} | {n for n, spec in CATEGORICAL.items() if spec[2]}
    assert drifted == planted


def test_our_fairness_equals_fairlearns(results):
    (size,), _ = results
    assert fairness_difference(size) <= 1e-9


def test_the_results_file_names_every_contender_and_target(results):
    _, text = results
    for words in ("drift report, warm", "drift report, cold", "Evidently", "fairlearn", "plain scan",
                  "Targets", "within 3x of a plain scan"):
        assert words in text, words


def test_the_generated_log_is_deterministic(tmp_path: Path):
    import duckdb

    sums = []
    for folder in ("a", "b"):
        db = generate(tmp_path / folder, 2_000, 400, quiet=True)
        con = duckdb.connect(str(db), read_only=True)
        sums.append(con.execute("SELECT sum(num_00), sum(num_17) FILTER (WHERE NOT isnan(num_17)), count(label), "
                                "string_agg(cat_device, '' ORDER BY request_id) "
                                "FROM bench_log").fetchone())
        con.close()
    assert sums[0] == sums[1]
