"""Benchmark: our warehouse push-down against Evidently 0.7 and fairlearn on the same rows (speed and agreement).

    python -m bench.monitoring [--rows 1000000 10000000] [--repeat 3] [--out bench/RESULTS.md]

**Data.** A deterministic synthetic prediction log is generated *inside DuckDB* (``range()`` and a
hash-based pseudo-random stream, so 10M rows take seconds and little memory) into a DuckDB file of
the cache directory, reused while its parameters are unchanged: 20 numerical and 5 categorical
features, a sensitive attribute, prediction/score/label (labels partly NULL), latency, status,
version and a timestamp spread evenly over five weeks, plus a reference table. Several features
drift in the last week, which is the benchmark window (one fifth of the log).

**Contenders**, each run in a fresh child process so that its peak memory (``VmHWM``) is its own,
timed in wall-clock and in CPU seconds (the machine is shared: CPU time moves less with its load):

* ``ours_warm`` -- ``services.monitoring.report.window_report`` (drift, fairness, latency and
  performance pushed into DuckDB as SQL) with the reference profile already kept in the tower
  state: loading it is timed, computing it is not. Its pieces are timed by wrapping the
  ``services.stores.warehouse`` functions the report calls.
* ``ours_cold`` -- the same after computing the reference profile from the warehouse.
* ``evidently`` -- ``Report([DataDriftPreset()]).run`` on pandas frames of the same reference and
  window rows (loading them from DuckDB is timed apart).
* ``fairlearn`` -- ``MetricFrame`` (selection rate, TPR, FPR by the sensitive attribute),
  ``demographic_parity_difference`` and ``equalized_odds_difference`` on the window's rows.
* ``scan`` -- the floor: ``SELECT count/sum`` over every feature column of the window (and over
  every column the report reads), through the same engine.
* ``probe`` -- what bounds the histogram push-down: the same binning without aggregation, with an
  equi-width bin (no search), with a plain binary search, and an ASOF-JOIN alternative.

The parent prints a table of medians, the ratios, peak memory, the speed targets, whether our
drift verdicts equal Evidently's per column, and writes ``bench/RESULTS.md`` with ``--out``. ``--json``
keeps every raw measurement; ``--from-json`` renders them again without running anything. A full run
(1M and 10M rows) takes about 15-25 minutes here, most of it Evidently on 10M rows (run once: runs
slower than ``--slow-seconds`` are not repeated); ``--skip-evidently-above N`` and
``--evidently-timeout`` bound it.

**Layout.** ``data`` generates the log; ``stores`` builds the tower's stores for a data set through
``services.wiring`` (as the app, the CLI and the job do); ``machine`` holds the clocks and peak
memory; ``contenders`` and ``probe`` are what each child process times; ``runner`` starts the
children and runs one data size; ``comparison`` sets our figures against the reference libraries';
``tables`` and ``prose`` print the summary and write bench/RESULTS.md; ``cli`` is the command line.
"""
