"""The embedded demo: four registered models, their versions and 35 days of prediction logs.

``stories`` holds the content as pure data (numpy, pandas, scikit-learn; no I/O), drawn from the
per-model generators of ``populations``;
``seed`` writes it through the real MLflow API and into a DuckDB file.
"""
