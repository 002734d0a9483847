"""The registry's answers as plain frozen records: what ``Registry`` returns and its callers read.

Kept apart from the MLflow client so that the catalog, the pages and the tests can name these types
without reading the code that talks to MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ModelSummary:
    name: str
    description: str
    owner: str | None
    tags: dict[str, str]
    aliases: dict[str, str]  # alias -> version
    latest_version: str | None
    version_count: int
    last_updated: datetime | None


@dataclass(frozen=True)
class VersionInfo:
    model: str
    version: str
    run_id: str | None
    model_id: str | None
    source: str
    status: str
    stage: str  # legacy stage, 'None' if unused
    aliases: tuple[str, ...]
    description: str
    tags: dict[str, str]
    created: datetime | None
    last_updated: datetime | None


@dataclass(frozen=True)
class DatasetRef:
    name: str
    digest: str
    source: str
    source_type: str
    context: str | None


@dataclass(frozen=True)
class InputDataset:
    """One input dataset a version's run logged, as MLflow recorded it (``mlflow.log_input``).

    ``source`` is MLflow's raw text (usually a JSON description with a ``uri``): written by whoever
    logged the run, so callers treat it as untrusted. ``columns`` are (name, MLflow type) of its schema.
    """

    name: str
    digest: str
    source_type: str
    source: str
    context: str | None
    num_rows: int | None
    columns: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Lineage:
    model: str
    version: str
    model_id: str | None
    run_id: str | None
    run_name: str | None
    experiment_id: str | None
    run_status: str | None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]  # run tags without the mlflow.* internals
    datasets: tuple[DatasetRef, ...]
    git_commit: str | None
    parent_run_id: str | None
    aliases: tuple[str, ...]
