"""The explain benchmark's model: bench/monitoring's synthetic log and mapping, with four declared segments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.monitoring.data import FORMAT, MODEL, mapping_raw

# Four segments of different kinds and sizes (share of the window's rows in brackets), so their cost
# is that of ordinary segments: a category (25 %), a category of a NULL-able column (35 %), two
# categories (53 %) and a numerical range (50 %).
SEGMENTS: tuple[dict[str, Any], ...] = (
    {"name": "north", "column": "cat_region", "values": ["north"]},
    {"name": "app", "column": "cat_channel", "values": ["app"]},
    {"name": "s1-s2", "column": "cat_segment", "values": ["s1", "s2"]},
    {"name": "num05-low", "column": "num_05", "range": [None, 5]},
)
CBPE_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
CBPE_TOLERANCE = 0.005  # |ours - NannyML| of every estimated metric
PCA_TOLERANCE = 0.01  # relative difference of the window's reconstruction error


def explain_mapping() -> Any:
    """bench/monitoring's model mapping with the four segments declared."""
    from services.mapping import parse_model_mapping

    return parse_model_mapping(MODEL, {**mapping_raw(), "segments": [dict(s) for s in SEGMENTS]})


def explain_tower_url(data_dir: Path, rows: int, reference_rows: int) -> str:
    """Its own tower state (SQLite) per data set: the kept profiles of the whole log and of each segment."""
    return f"sqlite:///{data_dir / f'explain_tower_{rows}_{reference_rows}_v{FORMAT}.db'}"
