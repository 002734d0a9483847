"""A small registry and warehouse built the way the demo does (services/demo/seed.py): each version's run
logs its training DataFrame with ``mlflow.log_input`` (source ``warehouse://features.<table>@<snapshot>``),
the warehouse holds those rows in a training table (``snapshot`` column, ``row_index`` in logged order)
beside a prediction log whose window has drifted.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from services.mapping import ModelMapping, parse_model_mapping
from services.monitoring.reference_sources import parse_reference_sources

MODEL = "credit-model"
TRAINING_TABLE = "credit_model_training"
REFERENCE_TABLE = "reference_credit_model"
LOG_TABLE = "predictions_credit_model"
WINDOW = (datetime(2026, 11, 1), datetime(2026, 11, 8))
RULES = parse_reference_sources([{
    "match": "warehouse://features.{table}@{snapshot}", "table": "{table}", "snapshot_column": "snapshot",
    "order_column": "row_index", "tables": [TRAINING_TABLE]}])


def training_frame(seed: int, income_mean: float, age_low: int, rows: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "income": rng.normal(income_mean, 10.0, rows),
        "age": rng.integers(age_low, age_low + 20, rows),
        "region": rng.choice(["north", "south", "east"], rows).astype(object),
        "label": rng.integers(0, 2, rows),
    })


VERSIONS = {1: ("2026.01.01", training_frame(1, 50.0, 20)), 2: ("2026.06.01", training_frame(2, 70.0, 30))}


def mapping(reference: dict[str, Any] | None = None) -> ModelMapping:
    return parse_model_mapping(MODEL, {
        "table": LOG_TABLE, "task": "binary_classification",
        "columns": {"timestamp": "ts", "version": "model_version", "prediction": "prediction", "score": "score",
                    "label": "label", "latency_ms": "latency_ms", "status": "status"},
        "features": {"numerical": ["income", "age"], "categorical": ["region"]},
        "reference": reference if reference is not None else {"from_registry": "training", "table": REFERENCE_TABLE},
    })


def window_log(rows: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    start = WINDOW[0]
    return pd.DataFrame({
        "ts": [start + timedelta(seconds=int(s)) for s in rng.integers(0, 7 * 86400, rows)],
        "model_version": "1", "prediction": rng.integers(0, 2, rows), "score": rng.random(rows),
        "label": rng.integers(0, 2, rows), "latency_ms": rng.uniform(10, 50, rows), "status": "ok",
        "income": rng.normal(60.0, 12.0, rows), "age": rng.integers(25, 45, rows),
        "region": rng.choice(["north", "south", "east", "west"], rows).astype(object),
    })


def configured_reference() -> pd.DataFrame:
    return training_frame(99, 40.0, 18, 800)


def training_table(versions: dict[int, tuple[str, pd.DataFrame]] = VERSIONS) -> pd.DataFrame:
    parts = [frame.assign(snapshot=snapshot, row_index=np.arange(len(frame))) for snapshot, frame in versions.values()]
    return pd.concat(parts, ignore_index=True)


def write_warehouse(url: str, *, training: pd.DataFrame | None = None) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            window_log().to_sql(LOG_TABLE, conn, index=False)
            configured_reference().to_sql(REFERENCE_TABLE, conn, index=False)
            (training_table() if training is None else training).to_sql(TRAINING_TABLE, conn, index=False)
    finally:
        engine.dispose()


@dataclass
class Built:
    tracking_uri: str
    run_ids: dict[int, str]


def _source(uri: str) -> Any:
    """A dataset source whose JSON carries any ``uri`` (MLflow resolves only the URI schemes it knows)."""
    from mlflow.data.dataset_source import DatasetSource

    class UriSource(DatasetSource):
        @staticmethod
        def _get_source_type() -> str:
            return "warehouse_table"

        def load(self) -> Any:
            raise NotImplementedError

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> Any:
            raise NotImplementedError

        def to_dict(self) -> dict[str, Any]:
            return {"uri": uri}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> Any:
            raise NotImplementedError

    return UriSource()


@contextmanager
def _pointed_at(uri: str) -> Iterator[None]:
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri("")


def build_registry(path: Path, sources: dict[int, str | None] | None = None, production: int = 1,
                   versions: dict[int, tuple[str, pd.DataFrame]] = VERSIONS) -> Built:
    """One model, a run per version logging its training set (source per version: None logs no dataset)."""
    import mlflow
    import mlflow.data
    from mlflow import MlflowClient

    uri = f"sqlite:///{path}"
    client = MlflowClient(uri, registry_uri=uri)
    run_ids = {}
    with warnings.catch_warnings(), _pointed_at(uri):
        warnings.simplefilter("ignore")
        experiment = client.create_experiment(MODEL, artifact_location=(path.parent / "artifacts").as_uri())
        client.create_registered_model(MODEL)
        for number, (snapshot, frame) in versions.items():
            run = client.create_run(experiment, run_name=f"v{number}")
            run_id = run.info.run_id
            source = (sources or {}).get(number, f"warehouse://features.{TRAINING_TABLE}@{snapshot}")
            if source is not None:
                dataset = mlflow.data.from_pandas(frame, name=f"{TRAINING_TABLE}", targets="label",
                                                  source=_source(source))
                with mlflow.start_run(run_id=run_id):
                    mlflow.log_input(dataset, context="training")
            client.set_terminated(run_id)
            client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id)
            run_ids[number] = run_id
        client.set_registered_model_alias(MODEL, "production", str(production))
    return Built(uri, run_ids)


def logged_source(built: Built, number: int) -> str:
    from mlflow import MlflowClient

    run = MlflowClient(built.tracking_uri).get_run(built.run_ids[number])
    return str(json.loads(run.inputs.dataset_inputs[0].dataset.source)["uri"])


def tower_settings(folder: Path, tracking_uri: str, warehouse_url: str) -> Any:
    """Settings whose tower.yaml maps the model with ``from_registry: training`` and the resolver rule."""
    import yaml

    from services.settings import load_settings

    plain = mapping()
    config = {
        "models": {MODEL: {
            "table": plain.table, "task": plain.task, "columns": plain.columns,
            "features": {"numerical": list(plain.numerical), "categorical": list(plain.categorical)},
            "reference": {"from_registry": "training", "table": REFERENCE_TABLE}}},
        "reference_sources": [{"match": "warehouse://features.{table}@{snapshot}", "table": "{table}",
                               "snapshot_column": "snapshot", "order_column": "row_index",
                               "tables": [TRAINING_TABLE]}],
    }
    (folder / "tower.yaml").write_text(yaml.safe_dump(config))
    return load_settings({"TOWER_CONFIG": str(folder / "tower.yaml"), "TOWER_DATA_DIR": str(folder),
                          "MLFLOW_TRACKING_URI": tracking_uri, "WAREHOUSE_URL": warehouse_url})
