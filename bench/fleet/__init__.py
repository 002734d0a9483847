"""Benchmark: a fleet of registered models (seed, monitoring job, the fleet page's server side); see cli.py."""
