"""Benchmark: a 100M-row prediction log on one machine (window report, reference profile, backfill); see cli.py."""
