"""Seed the embedded demo: the stories of ``stories`` written through the real MLflow API and
into a real DuckDB warehouse, following the model mapping of tower.yaml.

Safe to interrupt: the registry and the warehouse are built into temporary files next to their
final paths and renamed into place at the end; a marker file written last says the demo is
complete. Without the marker, nothing at the final paths is ever taken for a finished demo.

Only the embedded files are ever written or wiped (docs/ARCHITECTURE.md, layers: the registry and the warehouse
belong to other teams); a non-file store URL is refused with ConfigError.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import duckdb
import mlflow
import mlflow.data
import mlflow.sklearn
import pandas as pd
import sklearn
from mlflow import MlflowClient
from mlflow.data.dataset_source import DatasetSource
from mlflow.entities import Metric, Param
from mlflow.models import infer_signature
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from services.demo.stories import (
    DEMO_STORIES,
    IMPORTANCE_PREFIX,
    ModelStory,
    TrainedVersion,
    prediction_log,
    reference_sample,
    train_version,
)
from services.errors import ConfigError
from services.mapping import ModelMapping
from services.settings import Settings

MARKER_NAME = "demo-seed.json"
ARTIFACTS_DIR = "artifacts"
# 2: the warehouse holds each version's training rows (features.<slug>_training), so the registry's
# logged datasets resolve; a demo seeded before has none and is reseeded.
_MARKER_FORMAT = 2
TRAINING_SNAPSHOT_COLUMN = "snapshot"  # the data_version each version's run logged
TRAINING_ORDER_COLUMN = "row_index"  # the logged DataFrame's row order, so MLflow's digest can be recomputed
_TEMP_SUFFIX = ".seeding"
# Given explicitly so MLflow does not infer them, which re-imports each model in a subprocess.
_PIP_REQUIREMENTS = [f"scikit-learn=={sklearn.__version__}"]
# MLflow 3 saves sklearn models with skops, which only reloads types it is told to trust. The
# seeder built these trees itself a moment ago, so their node arrays are trusted.
_SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
_RUN_MINUTES = 20  # recorded duration of a training run
_LOGICAL_COLUMNS = ("request_id", "timestamp", "version", "prediction", "score", "label", "latency_ms", "status")


@dataclass(frozen=True)
class SeedSummary:
    models: tuple[str, ...]
    versions: int  # model versions created
    log_rows: int  # rows in all prediction tables
    seconds: float
    skipped: bool  # True when the demo already existed and force was False


@dataclass(frozen=True)
class _Stores:
    """The embedded files the demo lives in."""

    mlflow_db: Path
    warehouse: Path
    artifacts: Path
    marker: Path
    # Names this build's temporary files. Unique per build because MLflow caches one store per
    # URI for the life of the process: a second build reusing a URI would find that store's
    # tables "already created" in what is by then a fresh, empty file.
    build: str = ""

    def temp(self, path: Path) -> Path:
        return path.with_name(f"{path.name}{_TEMP_SUFFIX}-{self.build}")


class WarehouseTableSource(DatasetSource):
    """Where a training snapshot came from: a feature table at a snapshot date.

    MLflow only resolves URI strings of the schemes it knows (s3, http, local files...), so the
    source is given as an object; its JSON in the run still carries a readable ``uri``.
    """

    def __init__(self, table: str, snapshot: str) -> None:
        self.table = table
        self.snapshot = snapshot

    @staticmethod
    def _get_source_type() -> str:
        return "warehouse_table"

    def load(self) -> Any:
        raise NotImplementedError("Demo training snapshots are synthetic and cannot be reloaded.")

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> WarehouseTableSource:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"uri": f"warehouse://{self.table}@{self.snapshot}", "table": self.table, "snapshot": self.snapshot}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> WarehouseTableSource:
        return cls(source_dict["table"], source_dict["snapshot"])


# ---------------------------------------------------------------- public API


def demo_exists(settings: Settings) -> bool:
    """True when a complete demo, seeded for this configuration, is in the embedded stores."""
    try:
        stores = _embedded_stores(settings)
        fingerprint = _fingerprint(settings, stores, _demo_models(settings))
    except ConfigError:
        return False
    marker = _read_marker(stores.marker)
    return (marker is not None and marker.get("fingerprint") == fingerprint
            and stores.mlflow_db.is_file() and stores.warehouse.is_file())


def seed_demo(settings: Settings, *, end_date: date | None = None, force: bool = False,
              progress: Callable[[str], None] = lambda _msg: None) -> SeedSummary:
    """Build the demo registry and warehouse; skip when they already hold it (unless ``force``)."""
    started = time.perf_counter()
    stores = _embedded_stores(settings)
    demo = _demo_models(settings)
    if not force and demo_exists(settings):
        return _skipped_summary(stores, started)
    if force:
        _require_inside(settings.data_dir, stores)
    else:
        _refuse_foreign_files(stores)
    # By default the logs stop at last midnight, as a nightly-loaded warehouse would: no row is
    # ever in the future, and "the last 7 days" are all but complete.
    end = end_date or datetime.now(UTC).date() - timedelta(days=1)
    for folder in {Path(settings.data_dir), stores.mlflow_db.parent, stores.warehouse.parent}:
        folder.mkdir(parents=True, exist_ok=True)
    _clear(settings, stores, wipe_final=force)
    stores = replace(stores, build=f"{os.getpid()}-{time.time_ns()}")
    versions, rows = _build(settings, stores, demo, end, progress)
    _publish(settings, stores)
    summary = SeedSummary(models=tuple(story.name for story, _ in demo), versions=versions, log_rows=rows,
                          seconds=round(time.perf_counter() - started, 2), skipped=False)
    _write_marker(stores.marker, _fingerprint(settings, stores, demo), summary, end)
    progress(f"Demo seeded in {summary.seconds:.1f} s: {versions} versions, {rows:,} log rows")
    return summary


def _build(settings: Settings, stores: _Stores, demo: list[tuple[ModelStory, ModelMapping]], end: date,
           progress: Callable[[str], None]) -> tuple[int, int]:
    """Write every model into the temporary registry and warehouse; return (versions, log rows)."""
    temp_db_uri = _temp_db_uri(stores)
    versions = rows = 0
    with _quiet_mlflow(), _mlflow_pointed_at(temp_db_uri), \
            contextlib.closing(duckdb.connect(str(stores.temp(stores.warehouse)))) as warehouse:
        client = MlflowClient(tracking_uri=temp_db_uri, registry_uri=temp_db_uri)
        for story, mapping in demo:
            trained = _train(story, end, progress)
            progress(f"{story.name}: registering {len(trained)} versions in MLflow")
            _register(client, settings, story, trained, stores.artifacts)
            progress(f"{story.name}: writing the prediction log and the reference table")
            rows += _write_tables(warehouse, story, mapping, trained, end)
            versions += len(trained)
        warehouse.execute("CHECKPOINT")  # nothing left in a .wal that would not follow the rename
    return versions, rows


# ---------------------------------------------------------------- stores, marker and safety


def _file_of(url: str, backend: str, setting: str) -> Path:
    """The database file of an embedded-store URL; ConfigError for anything else."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None
    if parsed is None or parsed.get_backend_name() != backend or parsed.database in (None, "", ":memory:"):
        scheme = url.split(":", 1)[0] if ":" in url else url
        raise ConfigError(
            f"{setting} is a {scheme}: URL, not an embedded {backend} file; the demo is only seeded "
            "into the embedded stores, never into a shared registry or warehouse.",
            f"Unset {setting} to use the embedded file under TOWER_DATA_DIR.",
        )
    assert parsed.database is not None  # None raised ConfigError above
    return Path(parsed.database).expanduser().absolute()


def _embedded_stores(settings: Settings) -> _Stores:
    data_dir = Path(settings.data_dir).expanduser().absolute()
    return _Stores(
        mlflow_db=_file_of(settings.mlflow_tracking_uri, "sqlite", "MLFLOW_TRACKING_URI"),
        warehouse=_file_of(settings.warehouse_url, "duckdb", "WAREHOUSE_URL"),
        artifacts=data_dir / ARTIFACTS_DIR,
        marker=data_dir / MARKER_NAME,
    )


def _require_inside(data_dir: Path, stores: _Stores) -> None:
    """Force wipes files: only ever those under the data folder."""
    root = Path(data_dir).expanduser().resolve()
    for path in (stores.mlflow_db, stores.warehouse):
        if not path.resolve().is_relative_to(root):
            raise ConfigError(f"Refusing to delete {path}: it is outside the data folder {root}.",
                              "A forced reseed only rebuilds the embedded files under TOWER_DATA_DIR.")


def _refuse_foreign_files(stores: _Stores) -> None:
    """Without force, never overwrite a registry or warehouse that is not a complete demo."""
    for path in (stores.mlflow_db, stores.warehouse):
        if path.exists():
            raise ConfigError(f"{path} exists but does not hold a complete demo seeded for this configuration.",
                              "Rebuild it with a forced reseed (`make reseed`), or point the setting elsewhere.")


def _demo_models(settings: Settings) -> list[tuple[ModelStory, ModelMapping]]:
    """The demo stories tower.yaml maps, each checked against its mapping."""
    demo = [(story, settings.models[story.name]) for story in DEMO_STORIES if story.name in settings.models]
    if not demo:
        raise ConfigError("tower.yaml maps none of the demo models "
                          f"({', '.join(s.name for s in DEMO_STORIES)}), so there is no demo to seed.")
    for story, mapping in demo:
        _check_mapping(story, mapping)
    return demo


def _check_mapping(story: ModelStory, mapping: ModelMapping) -> None:
    where = f"tower.yaml: models.{story.name}"
    if mapping.task != story.task:
        raise ConfigError(f"{where}.task is {mapping.task}, but the demo model is a {story.task}.")
    unknown = set(mapping.numerical + mapping.categorical + mapping.sensitive) - set(story.features + story.sensitive)
    if unknown:
        raise ConfigError(f"{where} lists columns the demo does not generate: {', '.join(sorted(unknown))}.")
    if "score" in mapping.columns and not story.is_classifier:
        raise ConfigError(f"{where}.columns maps a score, but the demo regressor has none.")


def _fingerprint(settings: Settings, stores: _Stores, demo: list[tuple[ModelStory, ModelMapping]]) -> str:
    """What a seeded demo depends on: its store files and, per model, its tables and columns.

    Files under the data folder are named relative to it, so a copied data folder (as the test
    fixtures make) is still recognised as a complete demo.
    """
    root = stores.marker.parent
    layout = {
        "format": _MARKER_FORMAT,
        "files": [str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
                  for p in (stores.mlflow_db, stores.warehouse)],
        "aliases": sorted(settings.stage_aliases.items()),
        "models": [[m.name, m.table, m.task, sorted(m.columns.items()), m.reference.table] for _, m in demo],
        "training": [training_table(story) for story, _ in demo],
    }
    return hashlib.sha256(json.dumps(layout, sort_keys=True).encode()).hexdigest()


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _write_marker(path: Path, fingerprint: str, summary: SeedSummary, end: date) -> None:
    temp = path.with_name(path.name + _TEMP_SUFFIX)
    temp.write_text(json.dumps({"fingerprint": fingerprint, "end_date": end.isoformat(),
                                "seeded_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                "models": list(summary.models), "versions": summary.versions,
                                "log_rows": summary.log_rows, "seconds": summary.seconds}, indent=2), encoding="utf-8")
    os.replace(temp, path)


def _skipped_summary(stores: _Stores, started: float) -> SeedSummary:
    marker = _read_marker(stores.marker) or {}
    return SeedSummary(models=tuple(marker.get("models", ())), versions=int(marker.get("versions", 0)),
                       log_rows=int(marker.get("log_rows", 0)),
                       seconds=round(time.perf_counter() - started, 2), skipped=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _clear(settings: Settings, stores: _Stores, *, wipe_final: bool) -> None:
    """Drop the marker first (the demo is no longer complete), then leftovers and, on force, the demo."""
    _remove(stores.marker)
    leftovers = {*stores.mlflow_db.parent.glob(f"{stores.mlflow_db.name}{_TEMP_SUFFIX}*"),
                 *stores.warehouse.parent.glob(f"{stores.warehouse.name}{_TEMP_SUFFIX}*")}
    targets = [*leftovers, stores.artifacts]
    if wipe_final:
        _release_sqlite_engines(settings.mlflow_tracking_uri)
        targets += [stores.mlflow_db, stores.warehouse]
    for target in targets:
        # SQLite and DuckDB side files go with their database.
        for path in (target, *(target.with_name(target.name + s) for s in ("-journal", "-wal", "-shm", ".wal"))):
            _remove(path)


def _release_sqlite_engines(*uris: str) -> None:
    """Close MLflow's pooled connections to these databases.

    MLflow keeps one SQLAlchemy engine per URI for the life of the process; after the file under a
    URI is replaced, its pooled connections would still read the old, deleted file.
    """
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    for store in (TrackingStore, RegistryStore):
        for uri in uris:
            engine = getattr(store, "_engine_map", {}).get(uri)
            if engine is not None:
                engine.dispose()


def _temp_db_uri(stores: _Stores) -> str:
    return f"sqlite:///{stores.temp(stores.mlflow_db)}"


def _publish(settings: Settings, stores: _Stores) -> None:
    """Rename the finished files into place; the marker, written next, makes them the demo."""
    _release_sqlite_engines(_temp_db_uri(stores))
    os.replace(stores.temp(stores.mlflow_db), stores.mlflow_db)
    os.replace(stores.temp(stores.warehouse), stores.warehouse)
    _release_sqlite_engines(settings.mlflow_tracking_uri)


# ---------------------------------------------------------------- MLflow


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's event prints, its loggers and library warnings while seeding."""
    from mlflow.utils.autologging_utils.logging_and_warnings import MlflowEventsAndWarningsBehaviorGlobally

    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    # MLflow re-enables its event stream when an inner "silent" block ends; this counted guard
    # keeps it off until the whole seeding is done.
    # MLflow leaves this context manager unannotated.
    with warnings.catch_warnings(), MlflowEventsAndWarningsBehaviorGlobally(  # type: ignore[no-untyped-call]
            disable_event_logs=True, disable_warnings=True, reroute_warnings=False):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


@contextlib.contextmanager
def _mlflow_pointed_at(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (needed by log_model) at ``uri``, then restore everything.

    set_tracking_uri also writes MLFLOW_TRACKING_URI into the environment, so both the module
    state and the environment variables are put back as they were.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_env = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    saved_tracking, saved_registry = tracking_utils._tracking_uri, registry_utils._registry_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        # MLflow's module state is None while unset (its stubs type it so); restoring None is what we mean.
        mlflow.set_tracking_uri(saved_tracking)  # type: ignore[arg-type]
        mlflow.set_registry_uri(saved_registry)  # type: ignore[arg-type]
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _millis(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)


def _train(story: ModelStory, end: date, progress: Callable[[str], None]) -> dict[int, TrainedVersion]:
    trained = {}
    for spec in story.versions:
        progress(f"{story.name}: training version {spec.version} ({spec.algorithm.replace('_', ' ')})")
        trained[spec.version] = train_version(story, spec, end)
    return trained


def _register(client: MlflowClient, settings: Settings, story: ModelStory,
              trained: dict[int, TrainedVersion], artifacts: Path) -> None:
    """One experiment, one registered model, one run per version, then the stage aliases."""
    experiment_id = client.create_experiment(
        story.name, artifact_location=(artifacts / story.name).as_uri(),
        tags={"owner": story.owner, "team": story.team, "mlflow.note.content": story.description})
    client.create_registered_model(story.name, tags={"owner": story.owner, "team": story.team, "task": story.task},
                                   description=story.description)
    parent = _start_tuning_run(client, experiment_id, story, trained)
    for number in sorted(trained):
        _log_version(client, experiment_id, story, trained[number], parent if number in story.tuning_versions else None)
    if parent is not None:
        last = max(trained[n].trained_at for n in story.tuning_versions)
        client.set_terminated(parent, "FINISHED", _millis(last + timedelta(minutes=_RUN_MINUTES)))
    client.set_registered_model_alias(story.name, settings.stage_aliases.get("Production", "production"),
                                      str(story.production))
    client.set_registered_model_alias(story.name, settings.stage_aliases.get("Staging", "staging"),
                                      str(story.staging))


def _start_tuning_run(client: MlflowClient, experiment_id: str, story: ModelStory,
                      trained: dict[int, TrainedVersion]) -> str | None:
    """The parent of the versions that came out of one hyper-parameter sweep (run lineage)."""
    if not story.tuning_versions:
        return None
    first = trained[min(story.tuning_versions)]
    run = client.create_run(experiment_id, start_time=_millis(first.trained_at - timedelta(hours=1)),
                            run_name=f"{story.name}-tuning",
                            tags={"mlflow.user": story.owner, "mlflow.source.git.commit": first.git_commit,
                                  "data_version": first.data_version, "mlflow.source.type": "JOB"})
    client.log_batch(run.info.run_id, params=[
        Param("search", "grid"), Param("algorithm", first.spec.algorithm),
        Param("candidates", ",".join(f"v{n}" for n in sorted(story.tuning_versions)))])
    return cast(str, run.info.run_id)


def training_table(story: ModelStory) -> str:
    """The warehouse table holding every version's training rows, as the runs' dataset sources name it."""
    return f"features.{story.name.replace('-', '_')}_training"


def _log_version(client: MlflowClient, experiment_id: str, story: ModelStory, version: TrainedVersion,
                 parent_run_id: str | None) -> None:
    spec = version.spec
    slug = story.name.replace("-", "_")
    tags = {"mlflow.source.git.commit": version.git_commit, "data_version": version.data_version,
            "mlflow.user": story.owner, "mlflow.source.type": "JOB", "mlflow.source.name": f"train_{slug}.py"}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id  # what nested runs set: lineage to the sweep
    run_id = client.create_run(experiment_id, start_time=_millis(version.trained_at), tags=tags,
                               run_name=f"{story.name}-v{spec.version}").info.run_id
    finished = version.trained_at + timedelta(minutes=_RUN_MINUTES)
    client.log_batch(run_id, params=[Param(k, v) for k, v in version.params.items()],
                     metrics=[Metric(k, v, _millis(finished), 0) for k, v in version.metrics.items()]
                     + [Metric(IMPORTANCE_PREFIX + k, v, _millis(finished), 0) for k, v in version.importances.items()])
    features = version.training_data[list(story.features)]
    # mlflow.data re-exports from_pandas without declaring it to type checkers.
    dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
        version.training_data, name=f"{slug}_training", targets="label",
        source=WarehouseTableSource(training_table(story), version.data_version))
    with mlflow.start_run(run_id=run_id):
        mlflow.log_input(dataset, context="training")
        info = mlflow.sklearn.log_model(
            version.model, name="model", registered_model_name=story.name,
            signature=infer_signature(features.head(200), version.model.predict(features.head(200))),
            pip_requirements=_PIP_REQUIREMENTS, skops_trusted_types=_SKOPS_TRUSTED_TYPES)
    client.set_terminated(run_id, "FINISHED", _millis(finished))
    if info.registered_model_version != spec.version:
        raise RuntimeError(f"{story.name}: expected version {spec.version}, the registry made "
                           f"{info.registered_model_version}; is the registry really fresh?")
    client.update_model_version(story.name, str(spec.version),
                                f"{spec.note} Trained on the {version.data_version} snapshot.")


# ---------------------------------------------------------------- warehouse


def _physical(frame: pd.DataFrame, mapping: ModelMapping) -> pd.DataFrame:
    """Rename logical log columns to the mapping's names; drop the ones the mapping leaves out."""
    logical = [c for c in _LOGICAL_COLUMNS if c in frame.columns]
    unmapped = [c for c in logical if c not in mapping.columns]
    return frame.drop(columns=unmapped).rename(columns={c: mapping.column(c) for c in logical if c in mapping.columns})


def _create_table(warehouse: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    if "." in table:  # names come validated from the mapping (letters, digits, underscores)
        warehouse.execute(f'CREATE SCHEMA IF NOT EXISTS "{table.split(".", 1)[0]}"')
    warehouse.from_df(frame).create(table)


def _write_tables(warehouse: duckdb.DuckDBPyConnection, story: ModelStory, mapping: ModelMapping,
                  trained: dict[int, TrainedVersion], end: date) -> int:
    """The prediction log and the reference table of one model; returns the log's row count."""
    log = prediction_log(story, {n: v.model for n, v in trained.items()}, end)
    _create_table(warehouse, mapping.table, _physical(log, mapping))
    if mapping.reference.table:
        reference = reference_sample(story, trained[story.production].model, story.production)
        _create_table(warehouse, mapping.reference.table, _physical(reference, mapping))
    _create_table(warehouse, training_table(story), _training_rows(story, trained))
    return len(log)


def _training_rows(story: ModelStory, trained: dict[int, TrainedVersion]) -> pd.DataFrame:
    """Every version's logged training DataFrame, tagged with its snapshot and numbered in logged order."""
    parts, seen = [], set()
    for number in sorted(trained):
        version = trained[number]
        if version.data_version in seen:  # one snapshot must hold one version's rows only
            raise RuntimeError(f"{story.name}: two versions were trained on the snapshot {version.data_version}.")
        seen.add(version.data_version)
        frame = version.training_data.copy()
        frame[TRAINING_SNAPSHOT_COLUMN] = version.data_version
        frame[TRAINING_ORDER_COLUMN] = range(len(frame))
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)
