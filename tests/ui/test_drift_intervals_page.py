"""The drift explorer shows each feature's interval and noise level, and says in words when the window is
too small to tell (issue 15), on the seeded demo."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.app_test import open_page

pytestmark = pytest.mark.both_backends

PAGE = "app_pages/drift.py"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def drift_table(at):
    return next(d for d in at.dataframe if "Feature" in d.value.columns).value.set_index("Feature")


def with_drift_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **drift) -> None:
    config = yaml.safe_load((PROJECT_ROOT / "tower.yaml").read_text())
    config.setdefault("monitoring", {}).setdefault("alerts", {})["drift"] = {"consecutive": 3, **drift}
    path = tmp_path / "tower.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("TOWER_CONFIG", str(path))


def test_every_feature_shows_its_interval_and_noise_level(demo_env):
    at = open_page(PAGE, model="credit-risk")
    assert not at.exception
    table = drift_table(at)
    for column in ("Distance judged", "Distance", "Interval low", "Interval high", "Noise level"):
        assert column in table.columns
    income = table.loc["income"]
    assert income["Distance judged"] == "wasserstein"
    assert income["Interval low"] <= income["Distance"] <= income["Interval high"]
    assert 0 < income["Noise level"] < income["Interval low"]  # the story's income drift is far beyond noise
    assert not any("cannot be told from noise" in str(w.value) for w in at.warning)  # 14 days of traffic suffice
    assert any("interval and the noise level are shown beside" in str(c.value) for c in at.caption)


def test_a_window_too_small_for_the_material_threshold_says_so_in_words(demo_env, tmp_path, monkeypatch):
    # 14 days of credit-risk traffic resolve drift of a few hundredths, not of 0.005.
    with_drift_rule(tmp_path, monkeypatch, verdict="material", material=0.005)
    at = open_page(PAGE, model="credit-risk")
    assert not at.exception
    warning = " ".join(str(w.value) for w in at.warning).replace("\\", "")
    assert "rows: drift under" in warning and "cannot be told from noise at this size" in warning, warning
    assert "income" in warning and "the verdict needs 0.005" in warning
    table = drift_table(at)
    assert (table["Too small to tell"] == "too small").all()
    assert any("above 0.005" in str(c.value) for c in at.caption)
