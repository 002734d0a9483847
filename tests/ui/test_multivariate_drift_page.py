"""The drift page charts the stored PCA reconstruction error inside its band, and says the window's value."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, time, timedelta

import numpy as np
import pytest

from services import wiring
from services.monitoring import tower_reads
from tests.support.app_test import open_page, texts

PAGE = "app_pages/drift.py"
TITLE = "Multivariate drift (PCA reconstruction error)"


def values(array) -> list[float]:
    """A trace's numbers, whether plotly wrote them as a list or as a typed array."""
    if isinstance(array, dict):
        return list(np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).astype(float))
    return [float("nan") if v is None else float(v) for v in array]


def stored_series(settings) -> dict[str, object]:
    today = datetime.now(UTC).date()
    start, end = datetime.combine(today - timedelta(days=14), time()), datetime.combine(today, time())
    backends = wiring.Backends.from_settings(settings)
    try:
        return {m: tower_reads.reconstruction_over_time(backends.tower(), m, start, end) for m in settings.models}
    finally:
        backends.close()


def test_the_drift_page_draws_each_days_stored_error_and_band(demo_env):
    stored = stored_series(demo_env)
    charted = [m for m, frame in stored.items() if not frame.empty and frame["value"].notna().any()]
    assert charted, "the demo should give at least one model a reconstruction error"
    model = charted[0]
    at = open_page(PAGE, model=model)
    assert not at.exception and not at.error
    assert TITLE in [s.value for s in at.subheader]
    figure = next(f for f in (json.loads(e.proto.spec) for e in at.get("plotly_chart"))
                  if any(t.get("name") == "reconstruction error" for t in f["data"]))
    traces = {t.get("name"): t for t in figure["data"]}
    frame = stored[model]
    assert values(traces["reconstruction error"]["y"]) == pytest.approx(list(frame["value"]), nan_ok=True)
    assert values(traces["band (upper)"]["y"]) == pytest.approx(list(frame["upper"]), nan_ok=True)
    assert values(traces["reference band (mean ± 3σ)"]["y"]) == pytest.approx(list(frame["lower"].fillna(0.0)))
    outside = int(frame["drifted"].fillna(False).sum())
    assert len(values(traces["outside the band"]["y"])) == outside
    said = texts(at)
    assert f"{outside} of {len(frame)} days outside the band" in said
    assert "Multivariate: reconstruction error" in said  # the whole window's value beside the table

