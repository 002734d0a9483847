"""The prediction-log warehouse, read only: every statement the tower sends it.

SQLAlchemy Core with bound parameters; table and column names only from a
:class:`~services.mapping.ModelMapping`; naive UTC datetimes; half-open windows ``[start, end)``.

==================  ===========================================================================
engine              the read-only engine, connections, ping, and how failures are reported
sql                 shared SQL building blocks and how result values are read back
rows                which rows an aggregate reads (a log window or the reference) as a subquery
logs                traffic and latency of the log per day, version and window; its time span
histograms          numerical histograms and value counts (drift)
binning             how a value finds its bin in SQL, per dialect
outcomes            fairness counts, classification counts, regression sums
profiles            reference counts and quantile edges of the numerical columns
mapping_check       whether the warehouse holds a mapping's table and columns
==================  ===========================================================================

**Round trips** for one window, or for a whole backfill grouped by day and version
(docs/ARCHITECTURE.md, "Push the work to the data"):

=====================  ======================================================================
numeric_histograms     1 (all numerical features: counts, sums, nulls, sums of squares per bin)
value_counts           1 per call (all categorical features; or the few-valued numerical ones)
fairness_counts        1 (all sensitive attributes)
classification_counts  1 (confusion, rounded-score counts and label coverage together)
regression_sums        1 (count, sum |e|, sum e^2 and label coverage)
latency_summaries      1 (2 on dialects without a quantile aggregate, e.g. SQLite)
=====================  ======================================================================
"""
