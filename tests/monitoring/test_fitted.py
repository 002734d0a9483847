"""Fitted objects kept per (reference, kind) in a real SQLite tower state built with the tower's schema."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from services.monitoring.fitted import load_fitted, load_or_fit, store_fitted


def test_a_fit_is_computed_once_per_reference_and_kind_then_loaded(tower: sa.Engine) -> None:
    calls: list[str] = []

    def fit(tag: str) -> dict:
        calls.append(tag)
        return {"tag": tag, "x": [0.25, 0.5]}

    assert load_or_fit(tower, "ref-a", "pca", "m", lambda: fit("first")) == {"tag": "first", "x": [0.25, 0.5]}
    assert load_or_fit(tower, "ref-a", "pca", "m", lambda: fit("second"))["tag"] == "first"
    assert load_or_fit(tower, "ref-a", "calibration", "m", lambda: fit("other kind"))["tag"] == "other kind"
    assert load_or_fit(tower, "ref-b", "pca", "m", lambda: fit("other ref"))["tag"] == "other ref"
    assert load_or_fit(tower, "ref-a", "pca", "m", lambda: fit("refreshed"), refresh=True)["tag"] == "refreshed"
    assert load_fitted(tower, "ref-a", "pca") == {"tag": "refreshed", "x": [0.25, 0.5]}
    assert calls == ["first", "other kind", "other ref", "refreshed"]


def test_a_fit_with_nan_or_inf_is_refused_and_nothing_is_kept(tower: sa.Engine) -> None:
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError):
            store_fitted(tower, "ref-a", "pca", "m", {"x": [1.0, bad]})
    assert load_fitted(tower, "ref-a", "pca") is None
