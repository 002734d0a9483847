"""Command line of the tower: `tower demo seed [--force] [--end-date YYYY-MM-DD]`, `tower gate …`, ….

`tower` is the console script `pip install .` (or `make install`) puts beside the venv's python;
`python -m services.cli` runs the same `main`, and both call themselves `tower` in their help.

Exit codes: 0 success, 2 bad input or configuration (with a one-line message on stderr).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import cast

from services.errors import TowerError
from services.governance.audit_command import register as register_audit
from services.governance.commands import register as register_promote
from services.governance.commands import register_token
from services.governance.gate_command import register as register_gate
from services.monitoring.commands import register as register_monitoring
from services.settings import Settings
from services.wiring import load_settings


def _demo_seed(args: argparse.Namespace, settings: Settings) -> int:
    from services.demo.seed import seed_demo  # imported here: it pulls in scikit-learn

    summary = seed_demo(settings, end_date=args.end_date, force=args.force,
                        progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    if summary.skipped:
        print("The demo is already seeded (use --force to rebuild it).")
    else:
        print(f"Seeded {len(summary.models)} models, {summary.versions} versions and "
              f"{summary.log_rows:,} prediction-log rows in {summary.seconds:.1f} s.")
    return 0


def _demo_serve(args: argparse.Namespace, settings: Settings) -> int:
    from services.demo.serve import serve

    return serve(settings, port=args.port, oidc_port=args.oidc_port)


def build_parser() -> argparse.ArgumentParser:
    # A fixed prog: argparse would otherwise name the entry point it was started by (`cli.py`, `tower`).
    parser = argparse.ArgumentParser(prog="tower", description="ML Control Tower command line.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="the embedded demo").add_subparsers(dest="demo_command", required=True)
    seed = demo.add_parser("seed", help="create the demo registry and warehouse if they are not there yet")
    seed.add_argument("--force", action="store_true", help="delete and rebuild the embedded demo stores")
    seed.add_argument("--end-date", type=date.fromisoformat, default=None,
                      help="last day of the demo logs (default: yesterday, UTC)")
    seed.set_defaults(handler=_demo_seed)
    serve = demo.add_parser("serve", help="run the app with the demo's local OIDC provider (what `make run` does)")
    serve.add_argument("--port", type=int, default=8501, help="the app's port (default 8501)")
    serve.add_argument("--oidc-port", type=int, default=9400, help="the local OIDC provider's port (default 9400)")
    serve.set_defaults(handler=_demo_serve)
    register_promote(commands)
    register_gate(commands)
    register_token(commands)
    register_monitoring(commands)
    register_audit(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:  # the settings are read once, here, and handed to the command
        return cast(int, args.handler(args, load_settings()))
    except TowerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
