"""Monitoring: reference profiles, window reports, the daily job, alert episodes and read views.

Modules: ``config`` (the ``monitoring:`` section of tower.yaml), ``reference`` (reference histograms
kept in tower state), ``report`` (a window's aggregates and the pure composition of its statistics),
``results`` (what a report holds: its JSON and stored rows), ``store`` (tables), ``job`` (daily
windows), ``alerts`` (episodes and the webhook), ``tower_reads`` (what pages read of the stored
results and episodes), ``distributions`` (one feature binned in the warehouse for an overlay),
``report_tables`` (a report as display tables), ``evidence`` (drift and fairness evidence for
governance), ``co_drift``, ``commands`` (the CLI). Kept import-light: settings imports ``config``.
"""
