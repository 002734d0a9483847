"""The explain benchmark's main path at a tiny size: every contender runs, our CBPE and PCA drift numbers
are NannyML's on the same rows, and the RESULTS.md section it writes parses.

No speed is asserted here (the machine is shared); bench/RESULTS.md holds the measured figures.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from bench.explain.cli import main, parse_args, run
from bench.explain.comparison import cbpe_agreement, pca_agreement, ratios
from bench.explain.contenders import CONTENDERS, MAIN_SECONDS
from bench.explain.data import CBPE_METRICS, SEGMENTS
from bench.explain.prose import SECTION, results_markdown
from bench.monitoring.machine import machine
from bench.monitoring.runner import SizeResult
from bench.results_file import read_section, write_section

pytestmark = pytest.mark.slow  # six child interpreters (two import NannyML): ~30 s on an idle machine


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[SizeResult], str]:
    folder = tmp_path_factory.mktemp("explain")
    out = folder / "RESULTS.md"
    out.write_text("# Benchmark results\n\n<!-- bench:monitoring -->\nkept as it is\n<!-- /bench:monitoring -->\n")
    options = parse_args(["--rows", "5000", "--repeat", "1", "--data-dir", str(folder / "data")])
    sizes = run(options)
    write_section(out, SECTION, results_markdown(sizes, "python -m bench.explain --rows 5000", machine(),
                                                 machine(), datetime.now(UTC), options))
    return sizes, out.read_text()


def test_every_contender_ran_once_and_reported_its_time_and_memory(results):
    (size,), _ = results
    assert size.rows == 5_000 and size.reference_rows == 1_000
    for contender in CONTENDERS:
        runs = size.ok(contender)
        assert len(runs) == 1, (contender, size.runs[contender])
        assert runs[0][MAIN_SECONDS[contender]] > 0
        assert runs[0]["peak_rss_mib"] >= runs[0]["imports_rss_mib"] > 0
    for contender in ("cbpe", "pca", "nannyml_cbpe", "nannyml_pca"):
        run = size.last(contender)
        assert run["total_s"] == pytest.approx(run["fit_s"] + run["window_s"])
    assert all(value is not None and value > 0 for value in ratios(size).values())


def test_each_segment_is_reported_on_its_own_rows(results):
    (size,), _ = results
    segments = size.last("segments")
    window = size.last("base")["rows_current"]
    assert window == 1_000
    assert list(segments["segment_rows"]) == [s["name"] for s in SEGMENTS]
    # each a proper, non-empty part of the window (a segment filter that was ignored would give 1,000)
    assert all(0 < n < window for n in segments["segment_rows"].values()), segments["segment_rows"]
    assert segments["segments_s"] == pytest.approx(sum(segments["per_segment_s"].values()))


def test_our_cbpe_and_pca_drift_equal_nannymls_on_the_same_rows(results):
    (size,), _ = results
    cbpe = cbpe_agreement(size)
    assert cbpe is not None and cbpe["same_rows"] and cbpe["nannyml_calibrates"]
    assert set(cbpe["differences"]) == set(CBPE_METRICS)
    assert cbpe["largest"] <= 0.005 and cbpe["agree"]
    pca = pca_agreement(size)
    assert pca is not None and pca["same_rows"] and pca["rows"] == 1_000
    assert pca["relative"] <= 0.01 and pca["agree"]


def test_a_wrong_number_is_reported_as_a_disagreement(results):
    """The agreement check is what makes the speed worth reading: it must catch a shifted estimate."""
    (size,), _ = results
    runs = {c: [dict(r) for r in size.ok(c)] for c in CONTENDERS}
    runs["cbpe"][-1]["estimate"] = {**runs["cbpe"][-1]["estimate"], "roc_auc": runs["cbpe"][-1]["estimate"]["roc_auc"]
                                    + 0.01}
    runs["pca"][-1]["value"] = runs["pca"][-1]["value"] * 1.02
    wrong = SizeResult(size.rows, size.reference_rows, runs, {}, None, None, None)
    assert cbpe_agreement(wrong)["agree"] is False
    assert pca_agreement(wrong)["agree"] is False


def test_the_results_section_parses_and_leaves_the_others_alone(results, tmp_path):
    _, text = results
    assert "<!-- bench:monitoring -->\nkept as it is\n<!-- /bench:monitoring -->" in text
    section = read_section_of(text)
    assert section.startswith("## Explaining monitoring")
    for words in ("base window report", "+ segments", "NannyML CBPE", "DataReconstructionDriftCalculator",
                  "Cost on top of the base report", "Do the numbers agree", "load average"):
        assert words in section, words
    tables = [line for line in section.splitlines() if line.startswith("|")]
    assert tables and all(line.endswith("|") for line in tables)
    header = next(line for line in tables if line.startswith("| contender"))
    width = header.count("|")
    body = tables[tables.index(header) + 2: tables.index(header) + 2 + 14]
    assert len(body) == 14 and all(line.count("|") == width for line in body)  # every row has every cell
    seconds = [float(line.split("|")[3]) for line in body]
    assert all(s > 0 for s in seconds)
    assert re.search(r"CBPE on [\d,]+ scored predictions .*agrees", section)
    assert re.search(r"PCA reconstruction error of the window .*agrees", section)
    assert "DISAGREES" not in section


def test_the_saved_measurements_render_again_without_running_anything(results, tmp_path):
    sizes, _ = results
    import json

    saved = tmp_path / "run.json"
    saved.write_text(json.dumps({"command": "python -m bench.explain --rows 5000", "started": "2026-12-01T00:00:00",
                                 "before": machine(), "after": machine(),
                                 "options": {"repeat": 1, "slow_seconds": 60.0},
                                 "sizes": [s.to_json() for s in sizes]}))
    out = tmp_path / "RESULTS.md"
    assert main(["--from-json", str(saved), str(saved), "--out", str(out)]) == 0
    section = read_section(out, SECTION)
    assert section is not None and "agrees" in section
    assert section.count("#### 5,000-row log") == 2  # two saved runs, side by side
    assert "`python -m bench.explain --rows 5000; python -m bench.explain --rows 5000`" in section


def read_section_of(text: str) -> str:
    found = re.search(r"<!-- bench:explain -->\n(.*?)<!-- /bench:explain -->", text, re.DOTALL)
    assert found, "the explain section is missing"
    return found.group(1).strip()
