"""A large reference's edges from a sample (DuckDB): the statistics stay within the scipy tolerances.

Above ``reference.exact_edges_max_rows`` the 1000-quantile edges come from a Bernoulli sample of about
``EDGE_SAMPLE_ROWS`` rows; the bins' counts and sums stay exact for those edges. On a 1.5M-row reference
(threshold lowered to 1M so the sampled path runs) the KS statistic and the normed Wasserstein distance
of a stable and a drifted window must stay within the tolerances tests/monitoring/test_report.py holds
the exact edges to against scipy on the raw values.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from services.errors import ConfigError
from services.mapping import EXACT_EDGES_MAX_ROWS, ModelMapping
from services.monitoring.reference import ReferenceProfile, compute_profile, reference_id
from services.monitoring.reference import reference_definition as definition_of
from services.monitoring.report import window_report
from services.stats.histogram import bin_sample, reference_edges
from services.stats.two_sample import ks_resolution
from services.stores.warehouse.engine import make_engine
from services.stores.warehouse.profiles import EDGE_SAMPLE_ROWS, VALUE_COUNT_MAX
from tests.support import monitoring_data as data

pytestmark = pytest.mark.slow  # a 1.5M-row reference: a few seconds

REFERENCE_ROWS = 1_500_000
STABLE = (data.day(0), data.day(2))
DRIFTED = (data.day(2), data.day(4))
LOG = pd.concat([data.make_log(seed=11, rows=100_000, days=2),
                 data.make_log(seed=12, rows=100_000, days=2, shift=1.0, start=data.day(2))], ignore_index=True)
HISTOGRAMMED = ("x_normal", "x_lognormal")  # continuous: 1000 bins; x_int and x_three are value-counted


@pytest.fixture(scope="module")
def reference_frame() -> pd.DataFrame:
    return data.make_reference(seed=13, rows=REFERENCE_ROWS)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, reference_frame: pd.DataFrame) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("sampled") / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.register("log_frame", LOG)
    con.register("reference_frame", reference_frame)
    con.execute("CREATE TABLE predictions_synthetic AS SELECT * FROM log_frame ORDER BY ts")
    con.execute("CREATE TABLE reference_synthetic AS SELECT * FROM reference_frame")
    con.close()
    yield path


def _mapping(threshold: int | None) -> ModelMapping:
    reference = {"table": "reference_synthetic"}
    if threshold is not None:
        reference["exact_edges_max_rows"] = threshold  # type: ignore[assignment]
    return data.mapping("predictions_synthetic", reference=reference)


@pytest.fixture(scope="module")
def sampled(warehouse: Path) -> Iterator[tuple[object, ModelMapping, ReferenceProfile]]:
    engine = make_engine(f"duckdb:///{warehouse}")
    mapping = _mapping(1_000_000)
    yield engine, mapping, compute_profile(engine, mapping)
    engine.dispose()


def finite(values: pd.Series) -> np.ndarray:
    array = values.to_numpy(float)
    return array[np.isfinite(array)]


def test_above_the_threshold_the_edges_come_from_a_sample_and_each_bin_still_holds_about_a_thousandth(
        sampled, reference_frame):
    _, _, profile = sampled
    for column in HISTOGRAMMED:
        ref = finite(reference_frame[column])
        edges = profile.numerical[column].edges
        assert not np.array_equal(edges, reference_edges(ref)), column  # not the exact quantiles
        assert edges.size == 999, column
        shares = bin_sample(ref, edges).counts / ref.size
        # A 200k-row sample puts each edge within a few per cent of a thousandth of the reference.
        assert np.all(np.abs(shares - 1e-3) < 0.35e-3), (column, shares.min(), shares.max())
        # The kept fine histogram is exact for those edges: the same counts numpy gives on every row.
        assert np.array_equal(profile.numerical[column].histogram.counts, bin_sample(ref, edges).counts), column
    assert EDGE_SAMPLE_ROWS < REFERENCE_ROWS


def test_few_valued_features_keep_their_exact_distinct_count_and_value_counts(sampled, reference_frame):
    _, _, profile = sampled
    for column in ("x_int", "x_three"):
        ref = finite(reference_frame[column])
        numeric = profile.numerical[column]
        assert numeric.distinct == np.unique(ref).size <= VALUE_COUNT_MAX, column
        assert numeric.value_counted, column
        values, counts = np.unique(ref, return_counts=True)
        assert {k: v for k, v in (numeric.values or {}).items() if k is not None} == dict(
            zip(values.tolist(), counts.tolist(), strict=True)), column
    assert profile.numerical["x_normal"].distinct > VALUE_COUNT_MAX  # the sample's own count: a lower bound


@pytest.mark.parametrize("window", [STABLE, DRIFTED], ids=["stable", "drifted"])
def test_ks_and_wasserstein_on_sampled_edges_stay_within_the_scipy_tolerances(sampled, reference_frame, window):
    engine, mapping, profile = sampled
    report = window_report(engine, mapping, profile, *window)
    current = data.in_window(LOG, *window)
    for row in report.drift:
        if row.column not in HISTOGRAMMED:
            continue
        ref, cur = finite(reference_frame[row.column]), finite(current[row.column])
        edges = profile.numerical[row.column].edges
        scipy_d = stats.ks_2samp(ref, cur).statistic
        resolution = ks_resolution(bin_sample(ref, edges), bin_sample(cur, edges))
        assert row.ks_statistic <= scipy_d + 1e-12, row.column
        assert scipy_d - row.ks_statistic <= resolution + 1e-12, row.column
        assert abs(scipy_d - row.ks_statistic) <= 2e-3, row.column
        want = stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
        assert row.wasserstein_normed == pytest.approx(want, rel=0.02, abs=1e-3), row.column
    drifted = {d.column: d.drifted for d in report.drift if d.column in HISTOGRAMMED}
    assert set(drifted.values()) == {window == DRIFTED}, drifted


def test_at_or_below_the_threshold_the_edges_are_numpys_exact_quantiles(warehouse, reference_frame):
    engine = make_engine(f"duckdb:///{warehouse}")
    try:
        profile = compute_profile(engine, _mapping(None))  # the default, 2M: this reference is exact
    finally:
        engine.dispose()
    assert REFERENCE_ROWS <= EXACT_EDGES_MAX_ROWS
    for column in HISTOGRAMMED:
        ref = finite(reference_frame[column])
        assert np.array_equal(profile.numerical[column].edges, reference_edges(ref)), column
        assert profile.numerical[column].distinct == np.unique(ref).size, column


def test_the_threshold_is_part_of_the_reference_definition_only_when_it_is_not_the_default():
    default, lowered = definition_of(_mapping(None)), definition_of(_mapping(1_000_000))
    assert "exact_edges_max_rows" not in default
    assert lowered["exact_edges_max_rows"] == 1_000_000
    assert reference_id(default) != reference_id(lowered)
    assert reference_id(definition_of(_mapping(EXACT_EDGES_MAX_ROWS))) == reference_id(default)


@pytest.mark.parametrize("bad", [0, -5, 2.5, "many", True])
def test_a_threshold_that_is_not_a_positive_whole_number_is_refused(bad):
    with pytest.raises(ConfigError, match=r"reference\.exact_edges_max_rows must be a whole number"):
        _mapping(bad)
