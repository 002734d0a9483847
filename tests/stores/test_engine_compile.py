"""Every statement the warehouse sends, compiled for Trino, Snowflake and BigQuery and checked as their engines would.

No server of theirs runs here: the real warehouse functions build their statements for the target
dialect (tests/support/engine_sql.py records them; a DuckDB file answers so each function runs to
its end), each is compiled with the engine's own SQLAlchemy dialect, its bound values written in as
the driver sends them, then parsed with sqlglot's grammar for that engine in strict mode and checked
for what the grammar lets through: functions the engine lacks, aggregates it has only as analytic
functions, DuckDB-only syntax, column names that are neither mapped nor aliases (a bare ``inf``).
The mapping uses awkward identifiers (capitals, a reserved word, a schema).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from services.mapping import ModelMapping, parse_model_mapping
from services.stats.cbpe import CalibrationMap
from services.stores.warehouse import (
    calibrated,
    fleet_traffic,
    histograms,
    logs,
    outcomes,
    partitions,
    profiles,
    ranges,
    reconstruction,
    sql,
)
from services.stores.warehouse.rows import log_rows, reference_rows
from tests.support import monitoring_data as data
from tests.support.databases import ScratchWarehouse
from tests.support.engine_sql import CapturingEngine, problems, quoted_identifiers, rendered

ENGINES = ("trino", "snowflake", "bigquery")
SNOWFLAKE_MISSING = (
    "snowflake-sqlalchemy is not installed: 2.1.0, the first release that accepts SQLAlchemy 2.1, needs "
    "snowflake-connector-python>=5.1, which needs protobuf<7, and our pins resolve protobuf 7.36.2; "
    "snowflake-sqlalchemy 1.11.1 allows SQLAlchemy 2.1 in its metadata but fails to import under it "
    "(sqlalchemy.orm.context has no ORMSelectCompileState)"
)

# Awkward physical names (mappings allow [A-Za-z0-9_]): the dialect must quote capitals and keywords.
RENAMED = {"x_normal": "Income", "ts": "EventTime", "score": "Score", "label": "select",
           "c_region": "Region", "model_version": "Model_Version"}
NUMERICAL = ["Income", "x_lognormal", "x_int", "x_three"]
CATEGORICAL = ["Region", "c_new"]
START, END = data.day(0) + timedelta(hours=5), data.day(3)
CALIBRATION = CalibrationMap(x=np.array([0.2, 0.8]), y=np.array([0.1, 0.9]), grid=np.array([0.2, 0.5, 0.8]))
PCA = (["Income", "x_int"], [10.0, 5.0], [2.0, 3.0], np.array([[0.5, -0.5], [-0.5, 0.5]]))


def _mapping(log_table: str, reference_table: str) -> ModelMapping:
    columns = {logical: RENAMED.get(physical, physical) for logical, physical in data.COLUMNS.items()}
    return parse_model_mapping("odd names", {
        "table": log_table, "task": "binary_classification", "columns": columns,
        "features": {"numerical": NUMERICAL, "categorical": CATEGORICAL}, "sensitive": data.SENSITIVE,
        "reference": {"table": reference_table}, "slo": {"latency_p95_ms": 250},
        "segments": [{"name": "north", "column": "Region", "values": ["north", "east"]},
                     {"name": "middle", "column": "Income", "range": [8, 12]}],
    })


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ScratchWarehouse, ModelMapping]]:
    """The synthetic log and reference under awkward names, in a DuckDB file that answers the statements."""
    wh = ScratchWarehouse("duckdb", Path(tmp_path_factory.mktemp("engines")))
    log = data.make_log().rename(columns=RENAMED)
    reference = data.make_reference().rename(columns=RENAMED)
    log_table = wh.write(log, "PredictionLog")
    reference_table = wh.write(reference, "ReferenceRows")
    yield wh, _mapping(f"main.{log_table}", f"main.{reference_table}")
    wh.close()


Call = Callable[[Any, ModelMapping], object]
# (case, the warehouse function it drives, the call); together they cover every statement-issuing
# function of the warehouse modules below (test_every_warehouse_function_is_compiled).
CASES: list[tuple[str, Callable[..., object], Call]] = [
    ("numeric histograms per day and version", histograms.numeric_histograms,
     lambda e, m: histograms.numeric_histograms(e, m, log_rows(m, START, END), {
         "Income": np.linspace(5, 15, 40), "x_int": np.array([2.0, 5.0]), "x_three": np.empty(0)},
         by_day=True, by_version=True)),
    ("numeric histograms of a range segment", histograms.numeric_histograms,
     lambda e, m: histograms.numeric_histograms(e, m.for_segment("middle"), reference_rows(m.for_segment("middle")),
                                                {"x_lognormal": np.geomspace(0.1, 10, 30)})),
    ("categorical value counts", histograms.value_counts, lambda e, m: histograms.value_counts(
        e, m, log_rows(m, START, END), CATEGORICAL, numeric=False, by_day=True)),
    ("numerical value counts", histograms.value_counts, lambda e, m: histograms.value_counts(
        e, m, reference_rows(m), ["x_three"], numeric=True)),
    ("latency quantiles per day and version", logs.latency_summaries, lambda e, m: logs.latency_summaries(
        e, m, START, END, by_day=True, by_version=True)),
    ("latency of a values segment", logs.latency_summaries, lambda e, m: logs.latency_summaries(
        e, m.for_segment("north"), START, END)),
    ("latency per version with first and last request", logs.latency_by_version,
     lambda e, m: logs.latency_by_version(e, m, START, END)),
    ("latency per day", logs.latency_by_day, lambda e, m: logs.latency_by_day(e, m, START, END)),
    ("traffic per day", logs.traffic_by_day, lambda e, m: logs.traffic_by_day(e, m, START, END)),
    ("latency aggregate of the whole window", logs.latency_aggregate, lambda e, m: logs.latency_aggregate(
        e, m, START, END, (), quantiles=True, first_seen=True, last_seen=True)),
    ("window summary", logs.window_summary, lambda e, m: logs.window_summary(e, m, START, END)),
    ("log bounds", logs.log_bounds, lambda e, m: logs.log_bounds(e, m)),
    ("the fleet's traffic over two logs", fleet_traffic.fleet_traffic, lambda e, m: fleet_traffic.fleet_traffic(
        e, [m, m.for_segment("north")], START, END)),
    ("fairness counts", outcomes.fairness_counts, lambda e, m: outcomes.fairness_counts(
        e, m, log_rows(m, START, END), by_day=True, by_version=True)),
    ("classification counts", outcomes.classification_counts, lambda e, m: outcomes.classification_counts(
        e, m, log_rows(m, START, END), by_version=True)),
    ("regression sums", outcomes.regression_sums, lambda e, m: outcomes.regression_sums(
        e, m, log_rows(m, START, END), by_day=True)),
    ("CBPE reference scores and labels", calibrated.reference_score_labels,
     lambda e, m: calibrated.reference_score_labels(e, m, reference_rows(m))),
    ("CBPE cells per day", calibrated.calibrated_cells, lambda e, m: calibrated.calibrated_cells(
        e, m, log_rows(m, START, END), CALIBRATION, by_day=True)),
    ("CBPE cells by a partition", calibrated.cells_by, lambda e, m: calibrated.cells_by(
        e, m, log_rows(m, START, END), CALIBRATION, by_version=True, group=("gender", sa.column("gender")))),
    ("classification by partition", partitions.classification_by_partition,
     lambda e, m: partitions.classification_by_partition(e, m, log_rows(m, START, END), [
         partitions.Partition("Region"), partitions.Partition("Income", m.segments[1:])])),
    ("regression by partition", partitions.regression_by_partition, lambda e, m: partitions.regression_by_partition(
        e, m, log_rows(m, START, END), [partitions.Partition("band")])),
    ("expected cells by partition", partitions.expected_by_partition, lambda e, m: partitions.expected_by_partition(
        e, m, log_rows(m, START, END), [partitions.Partition("Income", m.segments[1:])], CALIBRATION)),
    ("PCA reference moments", reconstruction.reference_moments, lambda e, m: reconstruction.reference_moments(
        e, m, reference_rows(m), PCA[0])),
    ("PCA error sums", reconstruction.error_sums, lambda e, m: reconstruction.error_sums(
        e, m, log_rows(m, START, END), *PCA, by_day=True, by_version=True)),
    ("PCA chunk errors of a log period", reconstruction.chunk_errors, lambda e, m: reconstruction.chunk_errors(
        e, m, reference_rows(m, START, END), *PCA, 100)),
    ("PCA chunk errors of a reference table", reconstruction.chunk_errors, lambda e, m: reconstruction.chunk_errors(
        e, m, reference_rows(m), *PCA, 100)),
    ("value ranges", ranges.value_ranges, lambda e, m: ranges.value_ranges(e, m, reference_rows(m), NUMERICAL)),
    ("outside counts", ranges.outside_counts, lambda e, m: ranges.outside_counts(
        e, m, log_rows(m, START, END), {"Income": (6.0, 14.0), "x_int": (0.0, 8.0)}, by_day=True)),
    ("reference profiles and quantiles", profiles.column_profiles, lambda e, m: profiles.column_profiles(
        e, m, reference_rows(m), NUMERICAL, n_bins=100)),
]
# What the warehouse SQL has not worked around yet, as (engine, gap, text of the rendered window filter
# that shows it). test_known_gaps_are_still_there fails once one is fixed: delete it here and in README.
KNOWN_GAPS = [
    ("bigquery", "window bounds are DATETIME literals (SQLAlchemy's DateTime): a TIMESTAMP log column is refused "
     "(no DATETIME/TIMESTAMP comparison); map a DATETIME column or a view casting it",
     "`EventTime` >= DATETIME '2026-03-01 05:00:00'"),
]


def _engine_or_skip(name: str) -> None:
    if name == "snowflake":
        try:
            import snowflake.sqlalchemy  # noqa: F401
        except ImportError:
            pytest.skip(SNOWFLAKE_MISSING)


def _known_columns(mapping: ModelMapping) -> set[str]:
    return {*mapping.columns.values(), *mapping.numerical, *mapping.categorical, *mapping.sensitive}


def captured(engine_name: str, wh: ScratchWarehouse, mapping: ModelMapping, call: Call) -> CapturingEngine:
    engine = CapturingEngine(engine_name, wh.reader())
    call(engine.engine, mapping)
    assert engine.statements, "the call sent no statement"
    return engine


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize(("case", "function", "call"), CASES, ids=[c[0] for c in CASES])
def test_every_statement_parses_in_the_engines_grammar_and_uses_only_what_it_has(
        warehouse, engine_name: str, case: str, function: Callable[..., object], call: Call) -> None:
    _engine_or_skip(engine_name)
    wh, mapping = warehouse
    engine = captured(engine_name, wh, mapping, call)
    found = []
    for statement in engine.statements:
        checked = problems(rendered(statement, engine.dialect), engine_name, _known_columns(mapping))
        found += checked.problems
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(("engine_name", "gap", "evidence"), KNOWN_GAPS, ids=[g[0] for g in KNOWN_GAPS])
def test_known_gaps_are_still_there(warehouse, engine_name: str, gap: str, evidence: str) -> None:
    _engine_or_skip(engine_name)
    wh, mapping = warehouse
    engine = captured(engine_name, wh, mapping, lambda e, m: logs.latency_summaries(e, m, START, END))
    assert evidence in rendered(engine.statements[0], engine.dialect), f"fixed? remove the known gap: {gap}"


def test_every_warehouse_function_is_compiled() -> None:
    """A new statement-issuing function of the warehouse fails here until a case drives it."""
    driven = {f"{f.__module__}.{f.__name__}" for _, f, _ in CASES}
    issuing = set()
    for module in (histograms, logs, fleet_traffic, outcomes, calibrated, partitions, reconstruction, ranges,
                   profiles):
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ == module.__name__ and not name.startswith("_") \
                    and next(iter(inspect.signature(function).parameters), None) == "engine":
                issuing.add(f"{module.__name__}.{name}")
    assert issuing - driven == set()


@pytest.mark.parametrize("engine_name", ENGINES)
def test_awkward_identifiers_are_quoted_with_case_and_keywords_kept(warehouse, engine_name: str):
    _engine_or_skip(engine_name)
    wh, mapping = warehouse
    north = mapping.for_segment("north")
    engine = captured(engine_name, wh, north,
                      lambda e, m: outcomes.classification_counts(e, m, log_rows(m, START, END)))
    sql_text = rendered(engine.statements[0], engine.dialect)
    checked = problems(sql_text, engine_name, _known_columns(mapping))
    assert checked.tree is not None and checked.problems == []
    quoted = quoted_identifiers(checked.tree)
    for name in ("PredictionLog", "EventTime", "Score", "select", "Region"):
        assert quoted.get(name) is True, f"{name!r} not quoted in {sql_text}"
    quote = "`" if engine_name == "bigquery" else '"'
    assert f"{quote}PredictionLog{quote}" in sql_text and f"{quote}Region{quote}" in sql_text


@pytest.mark.parametrize("engine_name", ENGINES)
def test_bound_values_are_written_in_as_the_engine_reads_them(warehouse, engine_name: str):
    """Window bounds, segment values and infinities: typed literals the engine parses, never a bare ``inf``."""
    _engine_or_skip(engine_name)
    wh, mapping = warehouse
    north = mapping.for_segment("north")
    engine = captured(engine_name, wh, north, lambda e, m: outcomes.regression_sums(e, m, log_rows(m, START, END)))
    text = rendered(engine.statements[0], engine.dialect)
    bound = {"trino": "TIMESTAMP '2026-03-01 05:00:00.000000'", "bigquery": "'2026-03-01 05:00:00'",
             "snowflake": "'2026-03-01 05:00:00.000000'"}[engine_name]
    assert bound in text
    assert "'north'" in text and "'east'" in text
    below, above = {"trino": ("-infinity()", "infinity()"),
                    "bigquery": ("CAST('-inf' AS FLOAT64)", "CAST('inf' AS FLOAT64)"),
                    "snowflake": ("CAST('-inf' AS DOUBLE)", "CAST('inf' AS DOUBLE)")}[engine_name]
    assert f"> {below} AND" in text and f"< {above})" in text


# ----------------------------------------------------------------------------------------------
# The checker fails on what the engines would refuse
# ----------------------------------------------------------------------------------------------
def _compiled(engine_name: str, expression: Any) -> list[str]:
    _engine_or_skip(engine_name)
    dialect = sa.create_mock_engine({"trino": "trino://", "snowflake": "snowflake://",
                                     "bigquery": "bigquery://"}[engine_name], None).dialect
    statement = sa.select(expression.label("v")).select_from(sa.table("t", sa.column("x")))
    return problems(rendered(statement, dialect), engine_name, {"x"}).problems


@pytest.mark.parametrize("engine_name", ENGINES)
def test_the_checker_refuses_duckdbs_isfinite(engine_name: str):
    assert f"{engine_name} has no function isfinite" in _compiled(engine_name, sql.finite_value("duckdb", "x"))


@pytest.mark.parametrize("engine_name", ["snowflake", "bigquery"])
def test_the_checker_refuses_an_infinity_written_as_a_bare_inf(engine_name: str):
    """What the warehouse sent these engines before ``sql.infinity``: a bound inf, rendered as ``inf``."""
    problems_found = _compiled(engine_name, sa.column("x") < sa.literal(float("inf"), sa.Double()))
    assert "column 'inf' is neither mapped nor an alias of the statement" in problems_found


def test_the_checker_refuses_postgresqls_width_bucket_and_ordered_set_percentile_on_bigquery():
    from sqlalchemy.dialects import postgresql

    edges = sa.bindparam("e", [1.0, 2.0], type_=postgresql.ARRAY(sa.Double()))
    assert "bigquery has no function WidthBucket" in _compiled("bigquery", sa.func.width_bucket(sa.column("x"), edges))
    percentile = sa.func.percentile_cont(0.5).within_group(sa.column("x"))
    assert "bigquery has PercentileCont only as an analytic function (OVER ...)" in _compiled("bigquery", percentile)


@pytest.mark.parametrize(("engine_name", "text", "problem"), [
    ("trino", "SELECT x::DOUBLE FROM t", "trino has no :: cast"),
    ("trino", "SELECT [1.0, 2.0][1] FROM t", "a [...] list literal (DuckDB) where the engine needs ARRAY[...]"),
    ("bigquery", "SELECT x % 3 FROM t", "bigquery has no % operator (MOD(x, y))"),
    ("bigquery", "SELECT CAST(x AS DOUBLE) FROM t", "bigquery has no type DOUBLE"),
    ("snowflake", "SELECT quantile_cont(x, 0.5) FROM t", "snowflake has no function quantile_cont"),
    ("trino", "SELECT COUNT(*) FILTER x FROM t", "trino grammar: "),
])
def test_the_checker_refuses_sql_the_engine_would_reject(engine_name: str, text: str, problem: str):
    found = problems(text, engine_name, {"x"}).problems
    assert any(p.startswith(problem) for p in found), found
