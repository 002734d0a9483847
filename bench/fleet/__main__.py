"""``python -m bench.fleet``: see bench/fleet/cli.py."""

from bench.fleet.cli import main

raise SystemExit(main())
