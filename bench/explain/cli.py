"""``python -m bench.explain``: its options, the whole run, and the child processes' entry point."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench.explain
from bench.explain.contenders import CONTENDERS, child_main
from bench.explain.prose import SECTION, results_markdown
from bench.explain.runner import bench_size
from bench.explain.tables import print_summary
from bench.monitoring.data import WINDOW, default_reference_rows
from bench.monitoring.machine import machine
from bench.monitoring.runner import RESULT_TAG, SizeResult
from bench.results_file import write_section

PACKAGES = ("nannyml", "scikit-learn")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.explain",
                                     description=(bench.explain.__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000],
                        help="log sizes to run (default: 1000000 10000000)")
    parser.add_argument("--reference-rows", type=int, default=None,
                        help="rows of the reference table (default: a fifth of the log, the size of the window)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; the median is reported")
    parser.add_argument("--out", type=Path, default=None, help="write the results as Markdown (bench/RESULTS.md)")
    parser.add_argument("--json", type=Path, default=None, help="write every raw measurement as JSON")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "ml-control-tower-bench",
                        help="where the generated DuckDB files and tower states are cached (shared with "
                             "bench.monitoring)")
    parser.add_argument("--skip-nannyml-above", type=int, default=None, metavar="N",
                        help="do not run NannyML on logs of more than N rows (default: run it)")
    parser.add_argument("--nannyml-timeout", type=float, default=900.0,
                        help="seconds after which a NannyML run is stopped and recorded as timed out")
    parser.add_argument("--timeout", type=float, default=1800.0, help="timeout of every other child process")
    parser.add_argument("--slow-seconds", type=float, default=60.0,
                        help="a contender whose run takes longer than this is not repeated at that size")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each child, wait up to this long for the 1-minute load average to fall below "
                             "the number of cores (the machine is shared); default: do not wait")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None, metavar="PATH",
                        help="run nothing: print (and with --out write) the results saved by earlier --json runs "
                             "(several: one size each, e.g. 1M and 10M run apart, shown side by side)")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tower", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run(options: argparse.Namespace) -> list[SizeResult]:
    """Every size, every contender; prints as it goes and a summary at the end."""
    sizes = []
    for rows in options.rows:
        reference_rows = options.reference_rows or default_reference_rows(rows)
        print(f"{rows:,}-row log, {reference_rows:,}-row reference, window {WINDOW[0]:%Y-%m-%d} to "
              f"{WINDOW[1]:%Y-%m-%d}", flush=True)
        sizes.append(bench_size(rows, reference_rows, options))
    print_summary(sizes)
    return sizes


def merged(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Several saved runs as one: their sizes in order, every command named, the first start, the last end."""
    return {**records[0], "command": "; ".join(r["command"] for r in records), "after": records[-1]["after"],
            "sizes": [size for r in records for size in r["sizes"]]}


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.child:
        print(RESULT_TAG + json.dumps(child_main(options.child, options.db, options.tower)), flush=True)
        return 0
    if options.from_json:  # render the results of earlier runs again
        record = merged([json.loads(path.read_text()) for path in options.from_json])
        sizes = [SizeResult(**size) for size in record["sizes"]]
        print_summary(sizes)
    else:
        command = "python -m bench.explain " + " ".join(sys.argv[1:] if argv is None else argv)
        before, started = machine(PACKAGES), datetime.now(UTC)
        print(f"machine load (1/5/15 min) at the start: {before['load']}", flush=True)
        sizes = run(options)
        after = machine(PACKAGES)
        print(f"machine load (1/5/15 min) at the end: {after['load']}", flush=True)
        record = {"command": command.strip(), "started": started.isoformat(), "before": before, "after": after,
                  "options": {"repeat": options.repeat, "slow_seconds": options.slow_seconds},
                  "sizes": [s.to_json() for s in sizes]}
        if options.json:
            options.json.write_text(json.dumps(record, indent=1))
    if options.out:
        write_section(options.out, SECTION, results_markdown(
            sizes, record["command"], record["before"], record["after"], datetime.fromisoformat(record["started"]),
            argparse.Namespace(**record["options"])))
        print(f"\nwrote {options.out}")
    return 0
