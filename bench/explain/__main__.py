"""``python -m bench.explain``: see bench/explain/__init__.py."""

from bench.explain.cli import main

raise SystemExit(main())
