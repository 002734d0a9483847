"""The options, then a run (or a saved report) printed and written to bench/RESULTS.md."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.load.server import CACHE
from bench.protocol_load.report import markdown, print_report
from bench.protocol_load.run import run_protocol_load
from bench.protocol_load.walk import PAGES
from bench.results_file import write_section
from tests.support.databases import POSTGRES_URL


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.protocol_load",
        description="Concurrent Streamlit sessions over the websocket protocol, no browser.")
    parser.add_argument("--sessions", type=int, nargs="+", default=[20, 50, 100],
                        help="concurrent sessions of each level, run one after the other (20 50 100)")
    parser.add_argument("--replicas", type=int, default=1, choices=(1, 2), help="app processes (1)")
    parser.add_argument("--proxy", action="store_true",
                        help="serve through HAProxy with deploy/haproxy.cfg (always with --replicas 2)")
    parser.add_argument("--postgres", nargs="?", const=POSTGRES_URL, default=None, metavar="URL",
                        help="tower state on PostgreSQL (a database of its own on this server; default with "
                             f"--replicas 2: {POSTGRES_URL})")
    parser.add_argument("--pages", type=int, default=len(PAGES),
                        help=f"walk only the first N pages of {', '.join(p.name for p in PAGES)} ({len(PAGES)})")
    parser.add_argument("--page-run-slots", type=int, default=None, metavar="N",
                        help="TOWER_PAGE_RUN_SLOTS of every replica (default: the app's own default)")
    parser.add_argument("--signin-concurrency", type=int, default=4, help="sign-in round trips at once (4)")
    parser.add_argument("--timeout", type=float, default=120.0, help="per page, seconds (120)")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between levels (0)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the warm-up session(s)")
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"where the demo is seeded once ({CACHE})")
    parser.add_argument("--demo", type=Path, help="an already seeded demo folder (with monitoring) to copy")
    parser.add_argument("--out", type=Path, help="write the results as a section of this Markdown file")
    parser.add_argument("--section", default="protocol-load", help="the section of --out to write (protocol-load)")
    parser.add_argument("--json", type=Path, help="write the full report as JSON to this file")
    parser.add_argument("--from-json", type=Path, metavar="PATH", help="render a saved --json report again")
    args = parser.parse_args(argv)
    if min(args.sessions) < 1 or not 1 <= args.pages <= len(PAGES):
        parser.error(f"--sessions must be at least 1, --pages between 1 and {len(PAGES)}")
    if args.replicas == 2:
        args.proxy = True
        args.postgres = args.postgres or POSTGRES_URL
    args.command = "python -m bench.protocol_load " + " ".join(argv if argv is not None else sys.argv[1:])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text())
    else:
        report = run_protocol_load(args, log=lambda msg: print(msg, flush=True))
    print_report(report)
    if args.json and not args.from_json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    if args.out:
        write_section(args.out, args.section, markdown(report))
        print(f"\nwritten {args.out}")
    return 0 if all(lv["success_rate"] == 1.0 for lv in report["levels"]) else 1
