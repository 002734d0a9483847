"""Benchmark: what segments, CBPE and PCA drift cost on top of the base report, against NannyML 0.13.

    python -m bench.explain [--rows 1000000 10000000] [--repeat 3] [--out bench/RESULTS.md]

**Data.** bench/monitoring's synthetic log and reference (``bench.monitoring.data.generate``, the same
cached DuckDB files), with four segments declared on the benchmark model (``data.SEGMENTS``).

**Contenders**, each in a fresh child process (peak memory its own; wall-clock and CPU seconds):

* ``base`` -- ``services.monitoring.report.window_report`` for the window, its reference profile kept;
* ``segments`` -- the same for each declared segment (``mapping.for_segment``), each profile kept;
* ``cbpe`` -- the calibration fitted on the reference (``calibration_for(refresh=True)``), then the
  report with the estimate, the statement and the estimate it adds timed inside it;
* ``pca`` -- the PCA and its band fitted (``reconstruction_model(refresh=True)``), then the report with
  the window's reconstruction error, its statement timed inside it;
* ``nannyml_cbpe`` / ``nannyml_pca`` -- NannyML's ``CBPE`` and ``DataReconstructionDriftCalculator`` on
  pandas frames of the same rows (loading them is timed apart).

The parent prints the medians, what each addition costs against the base report, NannyML's time
against ours, peak memory, and whether the numbers agree (every CBPE metric within 0.005, the
reconstruction error within 1 %); ``--out`` writes the ``explain`` section of bench/RESULTS.md.

**Layout.** ``data`` names the segments and tolerances; ``contenders`` is what each child times;
``runner`` keeps the profiles and runs the children; ``comparison`` sets ours against NannyML's;
``tables`` and ``prose`` print and write; ``cli`` is the command line. Generation, stores, clocks,
child processes and the results file are bench/monitoring's and bench/results_file's.
"""
