"""``python -m bench.monitoring``: see bench/monitoring/__init__.py."""

from bench.monitoring.cli import main

raise SystemExit(main())
