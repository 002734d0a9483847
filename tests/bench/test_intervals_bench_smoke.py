"""The drift-interval benchmark's main path at a tiny size: it runs, times the intervals inside the
report and writes its section. No speed is asserted (the machine is shared); bench/RESULTS.md holds them."""

from __future__ import annotations

from pathlib import Path

from bench.intervals.cli import SECTION, main
from bench.monitoring.data import bench_mapping
from bench.results_file import read_section


def test_the_benchmark_times_the_intervals_inside_the_report_and_writes_its_section(tmp_path: Path, capsys):
    out = tmp_path / "RESULTS.md"
    out.write_text("<!-- bench:monitoring -->\nkept\n<!-- /bench:monitoring -->\n")
    assert main(["--rows", "20000", "--repeat", "1", "--replicates", "50", "--data-dir", str(tmp_path / "data"),
                 "--backfill-days", "1", "--out", str(out)]) == 0
    section = read_section(out, SECTION)
    mapping = bench_mapping()
    assert section is not None and f"| 20,000 | {len(mapping.numerical) + len(mapping.categorical)} |" in section
    assert read_section(out, "monitoring") == "kept"
    assert "| log rows | fixed (no intervals) |" in section
    printed = capsys.readouterr().out
    assert "20,000 rows: week report" in printed
    week, intervals = (float(printed.split(key)[1].split(" s")[0]) for key in ("week report ", "intervals "))
    assert 0 < intervals < week  # timed inside the report
