"""Pure statistics over warehouse aggregates: histograms, drift, fairness, performance, quantiles.

Nothing here does I/O or knows about SQL engines; every function takes numpy arrays or counts.
"""
