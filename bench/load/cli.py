"""Load benchmark: N concurrent real browser sessions against `streamlit run` (target: p95 first render < 5 s).

    python -m bench.load [--sessions 20] [--walks 2] [--think 0] [--ramp 0] [--rounds 1]
                         [--out bench/RESULTS.md] [--json report.json]

The options, then a run (or a saved report) printed and written to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.load.report import markdown, print_report
from bench.load.run import run_load
from bench.load.server import CACHE
from bench.load.session import STEP_TIMEOUT_MS
from bench.results_file import write_section
from services.settings import PROJECT_ROOT


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20, help="concurrent browser sessions per round (20)")
    parser.add_argument("--walks", type=int, default=2, help="fleet → drift → model walks per session (2)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of --sessions new sessions (1)")
    parser.add_argument("--out", type=Path,
                        help="write the results as a section of this Markdown file (bench/RESULTS.md)")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="render a saved --json report again (with --out) instead of running anything")
    parser.add_argument("--section", default="load",
                        help="the section of --out to write, so that runs of different paces sit side by side (load)")
    parser.add_argument("--json", type=Path, help="write the full report as JSON to this file")
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"where the demo is seeded once ({CACHE})")
    parser.add_argument("--demo", type=Path, help="an already seeded demo folder to copy instead of the cache")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the single warm-up session")
    parser.add_argument("--no-apptest", dest="apptest", action="store_false",
                        help="skip timing each page's script in AppTest")
    parser.add_argument("--release", type=float, default=0.0,
                        help="seconds to wait after the load before reading the server's RSS again (0)")
    parser.add_argument("--think", type=float, default=0.0,
                        help="mean seconds a user pauses before each page and each interaction (0: none)")
    parser.add_argument("--ramp", type=float, default=0.0, help="spread the sessions' starts over this many seconds")
    parser.add_argument("--wait-quiet", type=float, default=60.0,
                        help="wait up to this many seconds for other processes to leave the CPU before the load (60)")
    parser.add_argument("--artifacts", type=Path, default=PROJECT_ROOT / "test-artifacts" / "bench-load",
                        help="where a failed session's last screen is kept")
    parser.add_argument("--step-timeout", type=float, default=STEP_TIMEOUT_MS / 1000, help="per step, seconds (60)")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds for all rounds; sessions still running then fail (480)")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.walks < 1 or args.rounds < 1:
        parser.error("--sessions, --walks and --rounds must be at least 1")
    args.command = "python -m bench.load " + " ".join(argv if argv is not None else sys.argv[1:])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text())
    else:
        report = run_load(args, log=lambda msg: print(msg, flush=True))
    print_report(report)
    if args.json and not args.from_json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    if args.out:
        write_section(args.out, args.section, markdown(report))
        print(f"\nwritten {args.out}")
    return 0 if report["success"]["rate"] == 1.0 else 1
