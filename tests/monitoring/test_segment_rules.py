"""Alert rules that name a segment: refused at load time when the model lacks it, read from the segment's
stored series, and kept apart from the whole population's episodes (subject ``segment:<name>/…``).

Real tower state (SQLite file) and the job's own writer; the windows are written by hand so the
verdicts are known exactly.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from services.errors import ConfigError
from services.mapping import parse_model_mapping
from services.monitoring.alerts import evaluate_alerts, load_series
from services.monitoring.config import parse_monitoring_config
from services.monitoring.health_chips import health_chips
from services.monitoring.job import write_windows
from services.monitoring.segment_rules import segment_subject, split_subject
from services.monitoring.store import alert_episodes
from services.monitoring.tower_reads import open_alerts

DAY0 = datetime(2026, 5, 1)
MAPPING = parse_model_mapping("m", {
    "table": "log", "task": "binary_classification",
    "columns": {"timestamp": "ts", "version": "v", "prediction": "p", "score": "sc", "label": "y",
                "latency_ms": "l", "status": "s"},
    "features": {"numerical": ["x"], "categorical": ["region"]},
    "segments": [{"name": "north", "column": "region", "values": ["north"]},
                 {"name": "low-x", "column": "x", "range": [None, 0]}],
})
OTHER = parse_model_mapping("other", {
    "table": "log2",
    "columns": {"timestamp": "ts", "version": "v", "prediction": "p", "latency_ms": "l", "status": "s"},
    "features": {"numerical": ["x"]},
})


def config(raw: dict, models: dict | None = None):
    return parse_monitoring_config(raw, {}, models if models is not None else {"m": MAPPING})


def auc_row(value: float, threshold: float = 0.8, segment_alert: bool | None = None) -> dict:
    alert = (value < threshold) if segment_alert is None else segment_alert
    return {"version": "*", "slice_key": "", "slice_value": "", "column_name": "", "metric": "roc_auc",
            "method": "", "value": value, "threshold": threshold, "alert": alert, "reference_id": "r"}


def store(tower: sa.Engine, segment: str, values: list[float]) -> None:
    for day, value in enumerate(values):
        write_windows(tower, "m", {(DAY0 + timedelta(days=day)).date(): [auc_row(value)]},
                      DAY0 + timedelta(days=day, hours=26), segment=segment)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
def test_a_rule_names_segments_per_model_and_the_default_judges_the_whole_population_only():
    parsed = config({"models": {"m": {"performance": {"segments": ["north"], "max_drop": 0.1}}}})
    assert parsed.rules_for("m").segments_for("performance") == ("north",)
    assert parsed.rules_for("m").performance.max_drop == 0.1, "the rule's other settings still apply"
    assert parsed.rules_for("m").segments_for("drift") == ()
    assert parsed.alerts.segments == ()


def test_a_model_override_replaces_the_inherited_segments_and_an_empty_list_clears_them():
    models = {"m": MAPPING, "n": MAPPING}
    parsed = config({"alerts": {"drift": {"segments": ["north"]}},
                     "models": {"n": {"drift": {"segments": []}}}}, models)
    assert parsed.rules_for("m").segments_for("drift") == ("north",)
    assert parsed.rules_for("n").segments_for("drift") == ()


def test_a_segment_the_model_does_not_declare_is_refused_naming_its_segments():
    with pytest.raises(ConfigError, match=r"monitoring.models.m.performance.segments names 'south'") as err:
        config({"models": {"m": {"performance": {"segments": ["south"]}}}})
    assert "north, low-x" in err.value.hint


def test_an_odd_spelling_is_refused_with_the_declared_one_suggested():
    with pytest.raises(ConfigError, match="'North'") as err:
        config({"models": {"m": {"drift": {"segments": ["North"]}}}})
    assert "Did you mean 'north'?" in err.value.hint


def test_a_default_rule_naming_a_segment_is_refused_for_a_model_without_it():
    with pytest.raises(ConfigError, match=r"monitoring.alerts.drift.segments names 'north'.*model 'other'") as err:
        config({"alerts": {"drift": {"segments": ["north"]}}}, {"m": MAPPING, "other": OTHER})
    assert "declare them under models.other.segments" in err.value.hint


@pytest.mark.parametrize("bad", ["north", [None], [""], [{"name": "north"}], ["x"] * 101])
def test_segments_must_be_a_short_list_of_names(bad):
    with pytest.raises(ConfigError, match="segments"):
        config({"models": {"m": {"drift": {"segments": bad}}}})


def test_a_hostile_name_is_refused_shortened_in_the_message():
    with pytest.raises(ConfigError) as err:
        config({"models": {"m": {"drift": {"segments": ["n" * 5000 + "\n; DROP TABLE x"]}}}})
    assert len(err.value.message) < 300


# --------------------------------------------------------------------------------------------
# Subjects
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("segment", "subject", "written"), [
    ("", "income", "income"), ("north", "", "segment:north"), ("north", "income", "segment:north/income"),
    ("low-x", "roc_auc", "segment:low-x/roc_auc"), ("a.b_c", "gender", "segment:a.b_c/gender")])
def test_a_segment_subject_splits_back_into_its_parts(segment, subject, written):
    assert segment_subject(segment, subject) == written
    assert split_subject(written) == (segment, subject)


# --------------------------------------------------------------------------------------------
# Series and episodes from the stored results
# --------------------------------------------------------------------------------------------
def test_load_series_reads_a_named_segment_beside_the_whole_population(tower):
    store(tower, "", [0.9, 0.9, 0.9])
    store(tower, "north", [0.9, 0.7, 0.6])
    store(tower, "low-x", [0.5, 0.5, 0.5])  # not named: never read
    rules = config({"models": {"m": {"performance": {"segments": ["north"]}}}}).rules_for("m")
    with tower.connect() as conn:
        found = {s.subject: s for s in load_series(conn, MAPPING, rules) if s.rule == "performance"}
    assert set(found) == {"roc_auc", "segment:north/roc_auc"}
    assert [p[1] for p in found["segment:north/roc_auc"].points] == [False, True, True]
    assert [p[2] for p in found["segment:north/roc_auc"].points] == [0.9, 0.7, 0.6]
    assert [p[1] for p in found["roc_auc"].points] == [False, False, False]


def test_without_segments_a_rule_reads_the_whole_population_only(tower):
    store(tower, "north", [0.5, 0.5])
    rules = config({}).rules_for("m")
    with tower.connect() as conn:
        assert [s for s in load_series(conn, MAPPING, rules) if s.rule == "performance"] == []


def test_a_segment_episode_and_the_whole_populations_episode_of_one_window_are_two_episodes(tower):
    store(tower, "", [0.9, 0.7, 0.7])
    store(tower, "north", [0.9, 0.6, 0.6])
    rules = config({"models": {"m": {"performance": {"segments": ["north"]}}}}).rules_for("m")
    summary = evaluate_alerts(tower, MAPPING, rules, now=DAY0 + timedelta(days=4))
    assert summary.opened == 2
    frame = open_alerts(tower, "m").set_index("subject")
    assert set(frame.index) == {"roc_auc", "segment:north/roc_auc"}
    assert frame.loc["segment:north/roc_auc", "opened_window"] == frame.loc["roc_auc", "opened_window"]
    message = frame.loc["segment:north/roc_auc", "message"]
    assert message.startswith("m in segment north: roc_auc is 0.6,") and "segment:" not in message
    assert not frame.loc["roc_auc", "message"].startswith("m in segment")
    again = evaluate_alerts(tower, MAPPING, rules, now=DAY0 + timedelta(days=5))
    assert again.opened == 0, "re-evaluating never doubles an episode"
    with tower.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(alert_episodes)).scalar() == 2


def test_only_the_segment_breaches_so_only_the_segment_episode_opens(tower):
    store(tower, "", [0.9, 0.88, 0.87])
    store(tower, "north", [0.9, 0.6, 0.6])
    rules = config({"models": {"m": {"performance": {"segments": ["north"]}}}}).rules_for("m")
    evaluate_alerts(tower, MAPPING, rules, now=DAY0 + timedelta(days=4))
    assert list(open_alerts(tower, "m")["subject"]) == ["segment:north/roc_auc"]


def test_the_chip_of_a_segment_episode_links_to_the_page_filtered_to_the_segment(tower):
    store(tower, "", [0.9, 0.88, 0.87])
    store(tower, "north", [0.9, 0.6, 0.6])
    rules = config({"models": {"m": {"performance": {"segments": ["north"]}}}}).rules_for("m")
    evaluate_alerts(tower, MAPPING, rules, now=DAY0 + timedelta(days=4))
    chip = {c.dimension: c for c in health_chips(tower, "m")}["performance"]
    assert chip.status == "alert" and chip.page == "performance"
    assert dict(chip.params) == {"model": "m", "segment": "north", "start": "2026-04-29"}
    assert "in segment north" in chip.text
