"""Pure view logic: metric comparison and the lineage graph, on hand-made inputs."""

from __future__ import annotations

import math

from services.catalog.comparison import compare_metrics
from services.catalog.lineage_graph import build_lineage_graph
from services.stores.registry_records import DatasetRef, Lineage


def lineage(version: str, run: str, digest: str, aliases: tuple[str, ...] = ()) -> Lineage:
    return Lineage(model="m", version=version, model_id=f"m-{version}", run_id=run, run_name=f"r{version}",
                   experiment_id="1", run_status="FINISHED", params={}, metrics={}, tags={},
                   datasets=(DatasetRef(name="train", digest=digest, source="s", source_type="code",
                                        context="training"),),
                   git_commit=None, parent_run_id=None, aliases=aliases)


def test_comparison_knows_lower_is_better_for_error_metrics():
    table = compare_metrics({"rmse": 1.0, "r2": 0.8, "only_new": 1.0}, {"rmse": 2.0, "r2": 0.9})
    verdict = dict(zip(table["metric"], table["candidate is"], strict=True))
    assert verdict == {"only_new": "—", "r2": "worse", "rmse": "better"}
    assert math.isclose(table.set_index("metric").loc["r2", "difference"], -0.1)


def test_lineage_graph_shares_a_dataset_logged_by_two_runs():
    graph = build_lineage_graph([lineage("1", "run1", "abc", ("production",)), lineage("2", "run2", "abc")])
    kinds = [n.kind for n in graph.nodes]
    assert kinds.count("dataset") == 1 and kinds.count("run") == 2 and kinds.count("version") == 2
    labels = {n.key: i for i, n in enumerate(graph.nodes)}
    assert (labels["dataset:train:abc"], labels["run:run2"]) in graph.edges
    assert (labels["version:1"], labels["alias:production"]) in graph.edges
    assert len(graph.edges) == len(set(graph.edges)) == 5
