"""The reference from the registry: the production version's logged training dataset, resolved to its
warehouse snapshot, verified, kept per (model, version, digest), switched by a promotion, and the
configured reference (with the reason) whenever something is missing. SQLite and DuckDB warehouses."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy import stats

from services.monitoring.reference import load_or_compute
from services.monitoring.reference_sources import parse_reference_sources
from services.monitoring.registry_reference import MATCHES, MISMATCH, VERIFIED, resolve_reference
from services.monitoring.report import window_report
from services.stores.registry import Registry
from services.stores.warehouse.engine import make_engine
from tests.support import registry_reference as demo

HOSTILE = [
    "warehouse://features.predictions_credit_model@2026.01.01",   # the live log: would hide drift
    "warehouse://features.credit_model_training@2026.01.01' OR '1'='1",
    "WAREHOUSE://features.credit_model_training@2026.01.01",
    "warehouse://features.credit_model_training@2026.01.01 ",
    "s3://bucket/training.parquet",
]


@pytest.fixture(params=["sqlite", "duckdb"])
def warehouse_url(request, tmp_path) -> str:
    url = f"{request.param}:///{tmp_path / ('warehouse.' + request.param)}"
    demo.write_warehouse(url)
    return url


@pytest.fixture
def warehouse(warehouse_url):
    engine = make_engine(warehouse_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def registries(tmp_path_factory):
    """The registry files built once (MLflow's schema takes seconds to create), copied per test."""
    root = tmp_path_factory.mktemp("registries")
    sources = {"plain": {}, "no-dataset": {1: None}, **{f"source-{i}": {1: s} for i, s in enumerate(HOSTILE)}}
    for name, by_version in sources.items():
        (root / name).mkdir()
        demo.build_registry(root / name / "mlflow.db", sources=by_version)
    return root


def registry_copy(registries, tmp_path, name: str = "plain") -> Registry:
    target = tmp_path / f"registry-{name}.db"
    shutil.copy(registries / name / "mlflow.db", target)
    return Registry(f"sqlite:///{target}")


@pytest.fixture
def registry(registries, tmp_path) -> Registry:
    return registry_copy(registries, tmp_path)


def resolve(registry, warehouse, mapping=None, rules=demo.RULES, **kwargs):
    return resolve_reference(registry, warehouse, mapping or demo.mapping(), rules, **kwargs)


def test_the_reference_is_the_production_versions_training_snapshot_verified_by_its_digest(registry, warehouse):
    found = resolve(registry, warehouse)
    assert found.fallback is None and found.source is not None
    assert (found.source.version, found.source.table, found.source.snapshot) == ("1", demo.TRAINING_TABLE,
                                                                                  "2026.01.01")
    assert found.source.verification.status == VERIFIED, found.source.verification.detail
    assert found.source.rows == len(demo.VERSIONS[1][1])
    ref = found.mapping.reference
    assert (ref.table, ref.snapshot_column, ref.snapshot) == (demo.TRAINING_TABLE, "snapshot", "2026.01.01")


def test_promoting_another_version_switches_the_reference_profile_and_drift_numbers(registry, warehouse, tower):
    first = resolve(registry, warehouse)
    profile_a = load_or_compute(tower, warehouse, first.mapping)
    registry.set_alias(demo.MODEL, "production", "2")  # what the promotion's projection does
    second = resolve(registry, warehouse)
    assert second.source is not None and second.source.version == "2"
    assert second.source.verification.status == VERIFIED
    profile_b = load_or_compute(tower, warehouse, second.mapping)
    assert profile_b.reference_id != profile_a.reference_id
    assert profile_b.definition["registry"]["version"] == "2"
    assert profile_b.definition["registry"]["digest"] == second.source.digest
    rows_b = demo.VERSIONS[2][1]
    assert profile_b.rows == len(rows_b) and profile_a.rows == len(demo.VERSIONS[1][1])
    # both profiles are kept: going back to version 1 loads A's profile again, nothing recomputed
    assert load_or_compute(tower, warehouse, first.mapping).computed_at == profile_a.computed_at

    report = window_report(warehouse, second.mapping, profile_b, *demo.WINDOW)
    log = demo.window_log()
    by_column = {d.column: d for d in report.drift}
    ref_age, cur_age = rows_b["age"].to_numpy(float), log["age"].to_numpy(float)  # few values: exact
    assert by_column["age"].ks_statistic == pytest.approx(stats.ks_2samp(ref_age, cur_age).statistic, abs=1e-12)
    assert by_column["age"].wasserstein_normed == pytest.approx(
        stats.wasserstein_distance(ref_age, cur_age) / np.std(ref_age), rel=1e-9)
    ref_income, cur_income = rows_b["income"].to_numpy(), log["income"].to_numpy()
    assert by_column["income"].wasserstein_normed == pytest.approx(
        stats.wasserstein_distance(ref_income, cur_income) / np.std(ref_income), rel=0.02, abs=1e-3)
    assert report.rows_reference == len(rows_b)


def test_a_version_can_be_asked_for_by_number(registry, warehouse):
    assert resolve(registry, warehouse, version="2").source.snapshot == "2026.06.01"


def test_the_snapshot_reaches_sql_only_as_a_bound_parameter(registry, warehouse, tower):
    statements: list[str] = []
    sa.event.listen(warehouse, "before_cursor_execute",
                    lambda conn, cursor, statement, *rest: statements.append(statement))
    found = resolve(registry, warehouse)
    load_or_compute(tower, warehouse, found.mapping)
    assert statements and not [s for s in statements if "2026.01.01" in s]


def _training_without_last_rows(url):
    rows = demo.training_table()
    drop = rows.index[(rows["snapshot"] == "2026.01.01")][-10:]
    demo_engine = sa.create_engine(url)
    with demo_engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {demo.TRAINING_TABLE}"))
        rows.drop(drop).to_sql(demo.TRAINING_TABLE, conn, index=False, if_exists="append")
    demo_engine.dispose()


def test_a_row_count_mismatch_is_reported_and_the_reference_still_names_its_data(registry, warehouse_url):
    _training_without_last_rows(warehouse_url)
    engine = make_engine(warehouse_url)
    found = resolve(registry, engine)
    engine.dispose()
    assert found.mismatch and found.source.verification.status == MISMATCH
    assert "MLflow logged 1,500 rows, the warehouse holds 1,490" in found.source.verification.detail
    assert found.mapping.reference.snapshot == "2026.01.01" and found.fallback is None


def test_rows_in_another_order_give_a_digest_mismatch(registry, warehouse_url):
    engine = sa.create_engine(warehouse_url)
    with engine.begin() as conn:  # same rows, numbered in reverse
        conn.execute(sa.text(f"UPDATE {demo.TRAINING_TABLE} SET row_index = 100000 - row_index"))
    engine.dispose()
    reader = make_engine(warehouse_url)
    found = resolve(registry, reader)
    reader.dispose()
    assert found.source.verification.status == MISMATCH
    assert "digest" in found.source.verification.detail


def test_without_an_order_column_the_digest_is_said_not_computable(registry, warehouse):
    rules = parse_reference_sources([{"match": "warehouse://features.{table}@{snapshot}", "table": "{table}",
                                      "snapshot_column": "snapshot", "tables": [demo.TRAINING_TABLE]}])
    found = resolve(registry, warehouse, rules=rules)
    assert found.source.verification.status == MATCHES
    assert "digest not computable" in found.source.verification.text
    assert "order_column" in found.source.verification.detail


# ----------------------------------------------------------------------------------------- fallback
def assert_fell_back(found, *words):
    assert found.source is None and found.fallback is not None
    for word in words:
        assert word in found.fallback, found.fallback
    assert "Using the reference table reference_credit_model instead." in found.fallback
    assert found.mapping.reference.table == demo.REFERENCE_TABLE and found.mapping.reference.snapshot is None


def test_a_run_without_an_input_dataset_falls_back_with_the_version_named(registries, tmp_path, warehouse, tower):
    registry = registry_copy(registries, tmp_path, "no-dataset")
    found = resolve(registry, warehouse)
    assert_fell_back(found, "Version 1 of credit-model", "logged no input dataset", "mlflow.log_input")
    assert load_or_compute(tower, warehouse, found.mapping).rows == len(demo.configured_reference())


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_an_unresolvable_or_disallowed_source_falls_back_and_never_reaches_sql(registries, tmp_path, warehouse,
                                                                               index):
    registry = registry_copy(registries, tmp_path, f"source-{index}")
    statements: list[str] = []
    sa.event.listen(warehouse, "before_cursor_execute", lambda c, cur, statement, *rest: statements.append(statement))
    found = resolve(registry, warehouse)
    assert_fell_back(found, "Version 1 of credit-model")
    assert statements == []  # refused before the warehouse is asked anything


def test_a_missing_table_or_an_empty_snapshot_falls_back(tmp_path, registry):
    url = f"duckdb:///{tmp_path / 'bare.duckdb'}"
    demo.write_warehouse(url, training=demo.training_table({2: demo.VERSIONS[2]}))  # only version 2's rows
    engine = make_engine(url)
    assert_fell_back(resolve(registry, engine), "2026.01.01", "holds no rows")
    engine.dispose()
    rules = parse_reference_sources([{"match": "warehouse://features.{table}@{snapshot}", "table": "{table}_gone",
                                      "snapshot_column": "snapshot", "tables": ["credit_model_training_gone"]}])
    engine = make_engine(url)
    assert_fell_back(resolve(registry, engine, rules=rules), "does not have")
    engine.dispose()


def test_an_unreachable_registry_or_no_production_version_falls_back(registry, warehouse):
    down = Registry("http://127.0.0.1:9", timeout_s=1, max_retries=0)
    assert_fell_back(resolve(down, warehouse), "cannot be read from the registry")
    registry.delete_alias(demo.MODEL, "production")
    assert_fell_back(resolve(registry, warehouse), "No version of credit-model holds the Production stage")


def test_a_mapping_without_from_registry_is_left_alone(registry, warehouse):
    plain = demo.mapping({"table": demo.REFERENCE_TABLE})
    found = resolve(registry, warehouse, mapping=plain)
    assert found.mapping is plain and found.source is None and found.fallback is None


def test_segments_of_a_resolved_mapping_keep_the_registry_reference(registry, warehouse, tower):
    from services.segments import parse_segments

    found = resolve(registry, warehouse)
    segmented = replace(found.mapping, segments=parse_segments(
        [{"name": "north", "column": "region", "values": ["north"]}], "s", {"region": "categorical"}))
    north = segmented.for_segment("north")
    profile = load_or_compute(tower, warehouse, north)
    frame = demo.VERSIONS[1][1]
    assert profile.rows == int((frame["region"] == "north").sum())
    assert isinstance(frame, pd.DataFrame)


# ----------------------------------------------------------------------------------------- the job
def test_monitor_run_follows_a_promotion_to_the_new_versions_training_data(registry, warehouse_url, tmp_path):

    from services.monitoring.job import run_monitoring

    settings = demo.tower_settings(tmp_path, registry.tracking_uri, warehouse_url)
    (first,) = run_monitoring(settings)
    assert first.error is None and first.windows == 7
    assert "of version 1" in first.reference and "verified" in first.reference, first.reference
    registry.set_alias(demo.MODEL, "production", "2")
    (second,) = run_monitoring(settings)
    assert "of version 2" in second.reference and second.reference_id != first.reference_id


def test_a_table_without_the_snapshot_column_falls_back_naming_it(registry, tmp_path):
    url = f"sqlite:///{tmp_path / 'nosnap.sqlite'}"
    demo.write_warehouse(url, training=demo.training_table().drop(columns=["snapshot"]))
    engine = make_engine(url)
    assert_fell_back(resolve(registry, engine), "has no snapshot column snapshot")
    engine.dispose()


def test_on_postgresql_the_promotion_switches_the_verified_reference_too(registry, postgres_url, tmp_path, tower):
    from services.mapping import Reference
    from tests.support.databases import ScratchWarehouse

    wh = ScratchWarehouse("postgres", tmp_path, postgres_url)
    try:
        log = wh.write(demo.window_log(), demo.LOG_TABLE)
        configured = wh.write(demo.configured_reference(), demo.REFERENCE_TABLE)
        training = wh.write(demo.training_table(), demo.TRAINING_TABLE)
        mapping = replace(demo.mapping(), table=log, reference=Reference(table=configured, from_registry="training"))
        rules = parse_reference_sources([{"match": "warehouse://features.{table}@{snapshot}",
                                          "table": f"{wh.schema}.{{table}}", "snapshot_column": "snapshot",
                                          "order_column": "row_index", "tables": [training]}])
        engine = wh.reader()
        first = resolve(registry, engine, mapping, rules)
        assert first.source.verification.status == VERIFIED, first.source.verification.detail
        registry.set_alias(demo.MODEL, "production", "2")
        second = resolve(registry, engine, mapping, rules)
        assert second.source.version == "2" and second.source.verification.status == VERIFIED
        profile = load_or_compute(tower, engine, second.mapping)
        assert profile.reference_id != load_or_compute(tower, engine, first.mapping).reference_id
        report = window_report(engine, second.mapping, profile, *demo.WINDOW)
        age = next(d for d in report.drift if d.column == "age")
        ref_age, cur_age = demo.VERSIONS[2][1]["age"].to_numpy(float), demo.window_log()["age"].to_numpy(float)
        assert age.ks_statistic == pytest.approx(stats.ks_2samp(ref_age, cur_age).statistic, abs=1e-12)
    finally:
        wh.close()
