"""What the drift intervals (issue 15) cost on top of a window report, at 1M and 10M log rows.

Uses the monitoring benchmark's synthetic log and reference (bench/monitoring/data.py: 10 numerical and
6 categorical features, the last week drifted) and times, in one process, the week's report and the
seven daily reports of that week (as `monitor run` computes them), with the bootstrap's two entry points
(`numerical_intervals`, `categorical_intervals`) timed inside. Writes its section of bench/RESULTS.md.
"""
