"""Health per dimension: the worst finding wins, alerts beat warnings, the link carries the model, the
worst subject and a window starting before the onset."""

from __future__ import annotations

from datetime import datetime

import pytest

from services.monitoring.health_chips import DIMENSIONS, LEAD_DAYS, Finding, chips_from, worst


def test_an_unmonitored_model_has_every_chip_unknown_and_a_monitored_one_ok() -> None:
    assert {c.status for c in chips_from("m", [], monitored=False)} == {"unknown"}
    chips = chips_from("m", [], monitored=True)
    assert [c.dimension for c in chips] == list(DIMENSIONS) and {c.status for c in chips} == {"ok"}


def test_the_worst_subject_leads_and_the_window_starts_before_the_earliest_onset() -> None:
    findings = [Finding("drift", "alert", "income", datetime(2026, 11, 17), "income drifted", 6.1),
                Finding("drift", "alert", "debt_ratio", datetime(2026, 11, 16), "debt_ratio drifted", 9.6),
                Finding("drift", "warning", "age", datetime(2026, 11, 30), "age drifted once", 50.0)]
    drift = next(c for c in chips_from("credit-risk", findings, monitored=True) if c.dimension == "drift")
    assert (drift.status, drift.count, drift.label) == ("alert", 2, "alert ×2")
    assert drift.page == "drift"
    assert dict(drift.params) == {"model": "credit-risk", "feature": "debt_ratio",
                                  "start": f"2026-11-{16 - LEAD_DAYS:02d}"}
    assert drift.text == "debt_ratio drifted"


def test_a_warning_shows_when_no_alert_is_open_and_fairness_links_the_group() -> None:
    findings = [Finding("fairness", "warning", "gender", datetime(2026, 11, 30), "gap", 1.5)]
    fairness = next(c for c in chips_from("loan", findings, monitored=True) if c.dimension == "fairness")
    assert fairness.status == "warning" and fairness.params["sensitive"] == "gender"
    assert worst(c.status for c in chips_from("loan", findings, monitored=True)) == "warning"


def test_the_fleets_own_slo_breach_makes_the_latency_chip_alert() -> None:
    extra = {"latency": Finding("latency", "alert", "", datetime(2026, 11, 25), "p95 over SLO", 1.5)}
    latency = next(c for c in chips_from("fraud", [], monitored=True, extra=extra) if c.dimension == "latency")
    assert latency.status == "alert" and latency.page == "latency" and "feature" not in latency.params


def test_the_fleets_breach_does_not_count_twice_beside_the_jobs_own_alert() -> None:
    job = [Finding("latency", "alert", "", datetime(2026, 11, 23), "p95 over SLO 3 days", 1.5)]
    extra = {"latency": Finding("latency", "alert", "", datetime(2026, 11, 25), "p95 over SLO this week", 1.4)}
    latency = next(c for c in chips_from("fraud", job, monitored=True, extra=extra) if c.dimension == "latency")
    assert (latency.label, latency.text) == ("alert", "p95 over SLO 3 days")


def test_severity_ranks_a_smaller_p_value_as_the_worse_drift_and_a_distance_by_its_size() -> None:
    from services.monitoring.health_chips import severity

    assert severity(0.001, 0.05, "ks") > severity(0.04, 0.05, "ks") > 1  # both drift; p=0.001 far more
    assert severity(0.9, 0.1, "wasserstein") == pytest.approx(9.0)
    assert severity(0.2, 0.1) == pytest.approx(2.0) and severity(None, 0.1) == 0.0


def test_the_fleets_reads_find_for_every_model_what_its_own_reads_find(demo_env, monkeypatch) -> None:
    import sqlalchemy as sa

    from services.monitoring import health_chips

    monkeypatch.setattr(health_chips, "IN_CHUNK", 2)  # several chunks, one model alone in the last
    engine = sa.create_engine(demo_env.tower_db_url)
    try:
        models = [*sorted(demo_env.models), "never-monitored"]
        batched = health_chips.fleet_findings(engine, models)
        assert list(batched) == models
        for model in models:
            assert batched[model] == health_chips.tower_findings(engine, model), model
        assert batched["never-monitored"] == health_chips.TowerFindings((), monitored=False)
        found = [f for model in models for f in batched[model].findings]
        assert {f.status for f in found} >= {"alert"} and any(f.subject for f in found), "the demo's stories"
        assert health_chips.health_chips(engine, "credit-risk") == health_chips.chips_from(
            "credit-risk", batched["credit-risk"].findings, monitored=True)
    finally:
        engine.dispose()
