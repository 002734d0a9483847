"""The scale benchmark's main path at a tiny size: each child runs and the section says what it must.

No speed is asserted here (the machine is shared); bench/RESULTS.md holds the figures at 100M rows.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from bench.monitoring import data
from bench.scale.cli import main, markdown, parse_args, run

pytestmark = pytest.mark.slow  # three kinds of child interpreter, one of them the job's backfill


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("scale")
    return run(parse_args(["--rows", "20000", "--reference-rows", "4000", "--repeat", "1",
                           "--data-dir", str(folder), "--kept"]))


def test_every_child_ran_and_reported_its_time_and_memory(record):
    runs = record["runs"]
    for name, seconds in (("profile", "profile_s"), ("warm", "report_s"), ("backfill", "backfill_s")):
        (only,) = runs[name]
        assert "error" not in only and "timeout" not in only, only
        assert only[seconds] > 0 and only["cpu"][seconds] > 0 and only["peak_rss_mib"] > 0, name
    assert runs["profile"][0]["rows"] == 4000
    assert runs["warm"][0]["rows_current"] == 4000  # the last 7 of 35 days
    assert runs["backfill"][0]["windows"] == data.DAYS


def test_the_report_from_the_kept_days_is_the_report_from_the_log_without_its_histograms(record):
    runs = record["runs"]
    (keep,) = runs["keep"]
    assert keep["windows"] == 7, keep
    (warm,), (kept,) = runs["warm"], runs["warm_kept"]
    assert "error" not in kept and kept["cpu"]["report_s"] > 0 and kept["peak_rss_mib"] > 0, kept
    assert kept["pieces_s"]["numeric_histograms"] == 0.0 < warm["pieces_s"]["numeric_histograms"]
    assert kept["rows_current"] == warm["rows_current"] == 4000
    assert kept["latency"] == warm["latency"]
    for column, found in warm["drift"].items():
        assert kept["drift"][column]["method"] == found["method"], column
        assert kept["drift"][column]["score"] == pytest.approx(found["score"], rel=1e-9, abs=1e-12), column
    assert kept["fairness"] == warm["fairness"]  # counts only: the same integers give the same floats
    assert "from the kept days (needs the job to have run over those days)" in markdown(record)


def test_the_section_gives_both_targets_the_machine_load_and_why_evidently_is_not_run(record):
    text = markdown(record)
    for words in ("warm window report on 4,000 rows ≤ 10 s, < 1 GB", "cold reference profile at 4,000 rows ≤ 3 s",
                  "monitoring job backfill: 35 daily windows", "Evidently is not run here", "load average"):
        assert words in text, words


def test_a_log_generated_in_chunks_equals_the_one_generated_in_one_statement(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch):
    found = []
    for folder, chunk in (("chunks", 700), ("whole", 10**9)):
        monkeypatch.setattr(data, "CHUNK_ROWS", chunk)
        con = duckdb.connect(str(data.generate(tmp_path / folder, 2_000, 1_500, quiet=True)), read_only=True)
        found.append([con.execute(f"SELECT count(*), sum(hash(COLUMNS(*))) FROM {table}").fetchall()
                      for table in (data.LOG_TABLE, data.REFERENCE_TABLE)])
        con.close()
    assert found[0] == found[1]


def test_the_command_line_writes_its_own_section(tmp_path: Path, record, monkeypatch: pytest.MonkeyPatch):
    import bench.scale.cli as cli

    monkeypatch.setattr(cli, "run", lambda options: record)
    out = tmp_path / "RESULTS.md"
    out.write_text("<!-- bench:monitoring -->\nkept\n<!-- /bench:monitoring -->\n")
    assert main(["--out", str(out)]) == 0
    text = out.read_text()
    assert "kept" in text and "<!-- bench:scale -->" in text and "## Scale: a 20,000-row log" in text
