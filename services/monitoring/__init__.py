"""Monitoring: reference profiles, window reports, the daily job, alert episodes and read views.

Modules: ``config`` (the ``monitoring:`` section of tower.yaml), ``reference`` (reference histograms
kept in tower state), ``report`` (pure composition of a window's statistics), ``store`` (tables),
``job`` (daily windows), ``alerts`` (episodes and the webhook), ``views`` (what pages and the
governance evidence read), ``commands`` (the CLI). Kept import-light: settings imports ``config``.
"""
