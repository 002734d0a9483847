"""The performance page shows the CBPE estimate dashed, in its band, on the days labels have not completed,
and the number drawn equals the row-level oracle on the demo's raw rows (read from a copy of the DuckDB file)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest

from tests.support import cbpe_oracle
from tests.support.app_test import open_page, oracle_copy, texts
from tests.support.production import warehouse_file

pytestmark = pytest.mark.both_backends


def figure(at) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def test_the_estimate_is_drawn_dashed_where_labels_lack_and_equals_the_oracle(demo_env):
    import duckdb

    at = open_page("app_pages/performance.py", model="credit-risk")
    assert not at.exception and not at.error
    traces = {t.get("name"): t for t in figure(at)["data"]}
    estimate = traces["ROC AUC estimated (CBPE)"]
    assert estimate["line"]["dash"] == "dash"
    assert traces["ROC AUC"].get("line", {}).get("dash") in (None, "solid")  # realised stays solid
    band = traces["estimate band (±3 s.e.)"]
    days = [datetime.fromisoformat(d) for d in estimate["x"]]
    assert days and all(lo <= v <= hi for lo, v, hi in zip(band["y"], estimate["y"], traces["estimate upper"]["y"],
                                                           strict=True))
    assert "estimated before labels (CBPE" in texts(at, ("caption",))
    day = days[-1]
    with duckdb.connect(oracle_copy(str(warehouse_file(demo_env))), read_only=True) as con:
        ref = np.array(con.execute("SELECT score, label FROM reference_credit_risk WHERE label IS NOT NULL "
                                   "AND isfinite(score)").fetchall(), dtype=float)
        window = np.array(con.execute("SELECT score, prediction FROM predictions_credit_risk WHERE ts >= ? AND ts < ? "
                                      "AND prediction IS NOT NULL AND isfinite(score)",
                                      [day, day + timedelta(days=1)]).fetchall(), dtype=float)
    want = cbpe_oracle.cbpe(ref[:, 0], ref[:, 1], window[:, 0], window[:, 1])["roc_auc"]
    assert estimate["y"][-1] == pytest.approx(want, abs=0.005)


def test_a_regressor_shows_no_estimate_and_says_why(demo_env):
    at = open_page("app_pages/performance.py", model="demand-forecast")
    assert not at.exception
    names = {t.get("name") for t in figure(at)["data"]}
    assert not any("estimated" in (n or "") for n in names)
    assert "CBPE covers binary classifiers with a score, not regressors" in texts(at, ("caption",))
