"""``python -m bench.scale``: see bench/scale/cli.py."""

from bench.scale.cli import main

raise SystemExit(main())
