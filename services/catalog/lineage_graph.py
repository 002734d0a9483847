"""The lineage of a model's versions as a graph: dataset -> run -> version -> alias.

Pure: takes Lineage records, returns nodes and edges for any renderer.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.stores.registry_records import Lineage


@dataclass(frozen=True)
class Node:
    key: str
    label: str
    kind: str  # dataset | run | version | alias


@dataclass(frozen=True)
class LineageGraph:
    nodes: tuple[Node, ...]
    edges: tuple[tuple[int, int], ...]  # indexes into nodes, source -> target


def build_lineage_graph(lineages: list[Lineage]) -> LineageGraph:
    nodes: list[Node] = []
    index: dict[str, int] = {}
    edges: list[tuple[int, int]] = []

    def node(key: str, label: str, kind: str) -> int:
        if key not in index:
            index[key] = len(nodes)
            nodes.append(Node(key, label, kind))
        return index[key]

    for lin in lineages:
        version = node(f"version:{lin.version}", f"v{lin.version}", "version")
        if lin.run_id:
            run = node(f"run:{lin.run_id}", f"run {lin.run_name or lin.run_id[:8]}", "run")
            edges.append((run, version))
            for ds in lin.datasets:
                # Datasets are identified by digest: the same data logged twice is one node.
                dataset = node(f"dataset:{ds.name}:{ds.digest}", f"{ds.name} ({ds.digest[:8]})", "dataset")
                edges.append((dataset, run))
        for alias in lin.aliases:
            edges.append((version, node(f"alias:{alias}", f"@{alias}", "alias")))
    return LineageGraph(nodes=tuple(nodes), edges=tuple(dict.fromkeys(edges)))
