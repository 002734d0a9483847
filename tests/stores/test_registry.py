"""services.stores.registry on a real MLflow: a sqlite registry built through MLflow's own API, then the
same registry served over REST by a real `mlflow server`.

The registry (built once for the module):
  credit-risk (owner alice)  v1 run credit-v1              alias production, legacy stage Production
                             v2 run credit-v2, child of    alias staging,    legacy stage Staging
                                run tuning
                             v3 run credit-v3              no alias,         no stage
  fraud-detector (owner bob) v1 run fraud-v1               alias production
                             v2 run fraud-v2
  greeting                   a prompt: not a model, never listed
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from services.demo.processes import free_port
from services.errors import ConfigError, NotFound, RegistryUnavailable
from services.stores.registry import Registry
from services.stores.registry_records import Lineage, VersionInfo
from tests.support.mlflow_server import run_mlflow_server

STAGES = {"Production": "production", "Staging": "staging"}
GIT_COMMIT = "0123456789abcdef0123456789abcdef01234567"
DATASET_SOURCE = "s3://tower-data/credit/train.parquet"
BOUND_S = 30.0  # an unreachable registry must fail well within this
HTTP_ENV = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER")


@dataclass(frozen=True)
class Built:
    """What the fixture registry holds, for the assertions."""

    root: Path
    db: Path
    uri: str
    artifacts: Path
    run_ids: dict[str, str]  # run name -> run id
    model_ids: dict[tuple[str, str], str]  # (model, version) -> logged model id
    dataset_digest: str


def _train_frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"income": rng.normal(50, 10, 40), "age": rng.integers(18, 80, 40).astype(float)})
    frame["label"] = (frame["income"] > 50).astype(float)  # an int column makes MLflow warn
    return frame


def _log_version(experiment_id: str, model: str, run_name: str, c: float, auc: float, seed: int,
                 *, nested: bool = False) -> tuple[str, str]:
    """One training run that logs params, metrics, a dataset, the commit and a registered model."""
    frame = _train_frame(seed)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, nested=nested) as run:
        mlflow.log_params({"C": c, "penalty": "l2"})
        mlflow.log_metrics({"auc": auc, "accuracy": auc - 0.05})
        mlflow.set_tags({"mlflow.source.git.commit": GIT_COMMIT, "team": "risk"})
        dataset = mlflow.data.from_pandas(frame, source=DATASET_SOURCE, name=f"{model}-train", targets="label")
        mlflow.log_input(dataset, context="training")
        estimator = LogisticRegression(C=c).fit(frame[["income", "age"]], frame["label"])
        info = mlflow.sklearn.log_model(
            estimator, name="model", registered_model_name=model,
            pip_requirements=["scikit-learn"],  # no dependency inference: it would load the model
        )
        return run.info.run_id, info.model_id


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("registry")
    db = root / "mlflow.db"
    uri = f"sqlite:///{db}"
    artifacts = root / "artifacts"
    # The fluent API (start_run, log_model) uses the global tracking URI: point it here, restore after.
    saved_env = os.environ.get("MLFLOW_TRACKING_URI")
    saved_uri = mlflow.tracking._tracking_service.utils._tracking_uri
    mlflow.set_tracking_uri(uri)
    try:
        client = MlflowClient(uri)
        experiment_id = client.create_experiment("tower-tests", artifact_location=str(artifacts))
        run_ids: dict[str, str] = {}
        model_ids: dict[tuple[str, str], str] = {}

        versions = [("credit-risk", "1", "credit-v1", 0.5, 0.81), ("credit-risk", "2", "credit-v2", 1.0, 0.86),
                    ("credit-risk", "3", "credit-v3", 2.0, 0.84), ("fraud-detector", "1", "fraud-v1", 0.1, 0.9),
                    ("fraud-detector", "2", "fraud-v2", 0.2, 0.91)]
        for seed, (model, version, run_name, c, auc) in enumerate(versions):
            if run_name == "credit-v2":  # logged as the child of a tuning run
                with mlflow.start_run(experiment_id=experiment_id, run_name="tuning") as parent:
                    run_ids["tuning"] = parent.info.run_id
                    run_ids[run_name], model_ids[(model, version)] = _log_version(
                        experiment_id, model, run_name, c, auc, seed, nested=True)
            else:
                run_ids[run_name], model_ids[(model, version)] = _log_version(
                    experiment_id, model, run_name, c, auc, seed)

        client.update_registered_model("credit-risk", description="Probability of default.")
        client.set_registered_model_tag("credit-risk", "owner", "alice")
        client.set_registered_model_tag("fraud-detector", "owner", "bob")
        client.set_registered_model_alias("credit-risk", "production", "1")
        client.set_registered_model_alias("credit-risk", "staging", "2")
        client.set_registered_model_alias("fraud-detector", "production", "1")
        client.set_model_version_tag("credit-risk", "2", "validated", "true")
        with pytest.warns(FutureWarning):  # deprecated since MLflow 2.9, still used by some registries
            client.transition_model_version_stage("credit-risk", "1", "Production")
            client.transition_model_version_stage("credit-risk", "2", "Staging")
        mlflow.genai.register_prompt(name="greeting", template="Hello {{name}}")

        digest = client.get_run(run_ids["credit-v1"]).inputs.dataset_inputs[0].dataset.digest
    finally:
        mlflow.set_tracking_uri(saved_uri)
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env
    yield Built(root, db, uri, artifacts, run_ids, model_ids, digest)


@pytest.fixture(autouse=True)
def _restore_mlflow_http_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registry writes MLflow's HTTP settings into os.environ; undo that after each test."""
    for name in HTTP_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def server_url(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` serving a copy of the fixture registry."""
    copy = tmp_path_factory.mktemp("served") / "mlflow.db"
    shutil.copy2(built.db, copy)
    with run_mlflow_server(f"sqlite:///{copy}", copy.parent / "served-artifacts") as url:
        yield url


@pytest.fixture(params=["sqlite", "rest"])
def registry(request: pytest.FixtureRequest, built: Built) -> Registry:
    """The fixture registry read directly from its sqlite file, and over REST from a server."""
    if request.param == "sqlite":
        return Registry(built.uri)
    return Registry(request.getfixturevalue("server_url"), timeout_s=10, max_retries=1)


def closed_port_uri(credentials: str = "") -> str:
    return f"http://{credentials}127.0.0.1:{free_port()}"


# --- models ----------------------------------------------------------------------------------
def test_list_models_returns_every_model_sorted_with_owner_aliases_and_counts(registry: Registry) -> None:
    models = registry.list_models()

    assert [m.name for m in models] == ["credit-risk", "fraud-detector"]  # the prompt is not a model
    credit, fraud = models
    assert credit.owner == "alice" and fraud.owner == "bob"
    assert credit.tags["owner"] == "alice"
    assert credit.description == "Probability of default."
    assert credit.aliases == {"production": "1", "staging": "2"}
    assert fraud.aliases == {"production": "1"}
    assert (credit.version_count, credit.latest_version) == (3, "3")
    assert (fraud.version_count, fraud.latest_version) == (2, "2")
    assert credit.last_updated is not None and credit.last_updated.tzinfo is UTC


def test_get_model_returns_the_same_summary_as_the_listing(registry: Registry) -> None:
    assert registry.get_model("fraud-detector") == registry.list_models()[1]


def test_unknown_model_raises_not_found_naming_it(registry: Registry) -> None:
    with pytest.raises(NotFound, match=r"Model 'no-such-model' is not in the registry\."):
        registry.get_model("no-such-model")
    with pytest.raises(NotFound, match=r"Model 'no-such-model' is not in the registry\."):
        registry.list_versions("no-such-model")
    with pytest.raises(NotFound, match=r"Model 'no-such-model' is not in the registry\."):
        registry.stage_holders("no-such-model", STAGES)
    with pytest.raises(NotFound, match=r"Model 'no-such-model' is not in the registry\."):
        registry.lineage("no-such-model", "1")


# --- versions --------------------------------------------------------------------------------
def test_list_versions_is_newest_first_with_aliases_and_legacy_stages_filled_in(registry: Registry) -> None:
    versions = registry.list_versions("credit-risk")

    assert [v.version for v in versions] == ["3", "2", "1"]
    assert [v.aliases for v in versions] == [(), ("staging",), ("production",)]
    assert [v.stage for v in versions] == ["None", "Staging", "Production"]
    assert all(v.model == "credit-risk" and v.status == "READY" for v in versions)
    assert versions[1].tags == {"validated": "true"}
    assert all(v.created is not None and v.created.tzinfo is UTC for v in versions)


def test_versions_carry_their_run_and_logged_model_ids(registry: Registry, built: Built) -> None:
    v1 = registry.list_versions("credit-risk")[-1]

    assert v1.run_id == built.run_ids["credit-v1"]
    assert v1.model_id == built.model_ids[("credit-risk", "1")]
    assert v1.model_id is not None and v1.model_id in v1.source


def test_versions_are_ordered_by_number_not_text(built: Built, tmp_path: Path) -> None:
    """Ten versions: '10' must come before '9' (text order would put it after '1')."""
    db = tmp_path / "many.db"
    shutil.copy2(built.db, db)
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    client.create_registered_model("many")
    for _ in range(10):
        client.create_model_version("many", source=str(tmp_path / "nowhere"))

    versions = Registry(uri).list_versions("many")

    assert [v.version for v in versions] == [str(n) for n in range(10, 0, -1)]
    assert Registry(uri).get_model("many").latest_version == "10"


# --- stages ----------------------------------------------------------------------------------
def test_stage_holders_read_aliases_by_default(registry: Registry) -> None:
    holders = registry.stage_holders("credit-risk", STAGES)

    assert set(holders) == {"Production", "Staging"}
    assert isinstance(holders["Production"], VersionInfo)
    assert holders["Production"].version == "1" and holders["Production"].aliases == ("production",)
    assert holders["Staging"] is not None and holders["Staging"].version == "2"


def test_stage_holders_report_none_for_a_stage_nobody_holds(registry: Registry) -> None:
    holders = registry.stage_holders("fraud-detector", STAGES)

    assert holders["Production"] is not None and holders["Production"].version == "1"
    assert holders["Staging"] is None


def test_stage_holders_read_deprecated_stages_when_legacy(registry: Registry) -> None:
    credit = registry.stage_holders("credit-risk", STAGES, legacy=True)
    fraud = registry.stage_holders("fraud-detector", STAGES, legacy=True)

    assert credit["Production"] is not None and credit["Production"].version == "1"
    assert credit["Production"].stage == "Production"
    assert credit["Staging"] is not None and credit["Staging"].version == "2"
    assert fraud == {"Production": None, "Staging": None}  # aliases only, no legacy stages


# --- lineage ---------------------------------------------------------------------------------
def test_lineage_follows_version_to_run_params_metrics_datasets_and_commit(registry: Registry, built: Built) -> None:
    lineage = registry.lineage("credit-risk", "1")

    assert isinstance(lineage, Lineage)
    assert lineage.model_id == built.model_ids[("credit-risk", "1")]
    assert lineage.run_id == built.run_ids["credit-v1"]
    assert lineage.run_name == "credit-v1" and lineage.run_status == "FINISHED"
    assert lineage.experiment_id is not None
    assert lineage.params == {"C": "0.5", "penalty": "l2"}
    assert lineage.metrics == pytest.approx({"auc": 0.81, "accuracy": 0.76})
    assert lineage.tags == {"team": "risk"}  # the mlflow.* internals are left out
    assert lineage.git_commit == GIT_COMMIT
    assert lineage.parent_run_id is None
    assert lineage.aliases == ("production",)
    (dataset,) = lineage.datasets
    assert (dataset.name, dataset.digest, dataset.source) == ("credit-risk-train", built.dataset_digest, DATASET_SOURCE)
    assert dataset.source_type == "s3" and dataset.context == "training"


def test_lineage_of_a_nested_run_names_its_parent(registry: Registry, built: Built) -> None:
    lineage = registry.lineage("credit-risk", "2")

    assert lineage.run_id == built.run_ids["credit-v2"]
    assert lineage.parent_run_id == built.run_ids["tuning"]
    assert lineage.aliases == ("staging",)


def test_unknown_or_malformed_version_raises_not_found(registry: Registry) -> None:
    with pytest.raises(NotFound, match=r"Version '99' of model 'credit-risk' is not in the registry\."):
        registry.lineage("credit-risk", "99")
    with pytest.raises(NotFound, match=r"Version 'latest' of model 'credit-risk' is not in the registry"):
        registry.lineage("credit-risk", "latest")


def test_deleting_the_holding_version_empties_its_stage(built: Built, tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    shutil.copy2(built.db, db)
    uri = f"sqlite:///{db}"
    MlflowClient(uri).delete_model_version("fraud-detector", "1")  # MLflow drops its alias too

    holders = Registry(uri).stage_holders("fraud-detector", STAGES)

    assert holders == {"Production": None, "Staging": None}


def test_reads_never_touch_model_artifacts(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read works with the artifact store gone and every model loader booby-trapped."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the registry loaded or downloaded a model artifact")

    for target in ("mlflow.pyfunc.load_model", "mlflow.sklearn.load_model",
                   "mlflow.artifacts.download_artifacts", "mlflow.MlflowClient.download_artifacts",
                   "mlflow.store.artifact.artifact_repo.ArtifactRepository.download_artifacts"):
        monkeypatch.setattr(target, forbidden)
    hidden = built.artifacts.with_name("artifacts.hidden")
    built.artifacts.rename(hidden)
    try:
        registry = Registry(built.uri)
        registry.ping()
        registry.list_models()
        registry.get_model("credit-risk")
        registry.list_versions("credit-risk")
        registry.stage_holders("credit-risk", STAGES)
        registry.stage_holders("credit-risk", STAGES, legacy=True)
        assert registry.lineage("credit-risk", "2").parent_run_id == built.run_ids["tuning"]
    finally:
        hidden.rename(built.artifacts)


def test_registry_leaves_mlflow_global_tracking_uri_alone(built: Built) -> None:
    before = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"))

    Registry(built.uri).list_models()

    assert (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")) == before


# --- unavailable -----------------------------------------------------------------------------
def test_missing_sqlite_file_raises_unavailable_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "absent" / "mlflow.db"
    registry = Registry(f"sqlite:///{db}")

    with pytest.raises(RegistryUnavailable, match=r"does not exist.*Check MLFLOW_TRACKING_URI") as info:
        registry.list_models()

    assert str(db) in str(info.value)
    assert not db.exists() and not db.parent.exists()
    with pytest.raises(RegistryUnavailable):
        registry.ping()
    assert list(tmp_path.iterdir()) == []


def test_sqlite_file_that_is_not_a_database_raises_unavailable(tmp_path: Path) -> None:
    db = tmp_path / "garbage.db"
    db.write_bytes(b"this is not an sqlite database" * 100)

    with pytest.raises(RegistryUnavailable, match=r"The MLflow registry at sqlite:///.*garbage\.db cannot be used"):
        Registry(f"sqlite:///{db}").list_models()

    assert db.read_bytes() == b"this is not an sqlite database" * 100  # left untouched


def test_closed_port_raises_unavailable_quickly_naming_the_uri() -> None:
    uri = closed_port_uri()
    started = time.monotonic()

    with pytest.raises(RegistryUnavailable, match=r"connection refused.*Check MLFLOW_TRACKING_URI") as info:
        Registry(uri, timeout_s=2, max_retries=1).ping()

    assert time.monotonic() - started < BOUND_S
    assert uri in str(info.value)


def test_server_that_never_answers_fails_within_timeout_budget() -> None:
    """A listening socket that never replies: without our settings MLflow would wait 120 s x 8 tries."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()

        with pytest.raises(RegistryUnavailable, match=r"no answer within 1 s"):
            Registry(uri, timeout_s=1, max_retries=1).list_models()

        elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1 * (1 + 1) + 3  # timeout x (retries + 1), plus slack


def test_password_in_tracking_uri_is_hidden_from_the_message() -> None:
    uri = closed_port_uri("alice:s3cret-pw@")

    with pytest.raises(RegistryUnavailable) as info:
        Registry(uri, timeout_s=1, max_retries=0).list_models()

    assert "s3cret-pw" not in str(info.value)
    assert "alice:***@127.0.0.1" in str(info.value)


def test_timeout_and_retries_are_handed_to_mlflow_http_client() -> None:
    Registry("http://127.0.0.1:1", timeout_s=2.5, max_retries=3)

    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3"  # MLflow parses an int: rounded up
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"
    assert os.environ["MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER"] == "false"


def test_invalid_timeout_or_retries_are_refused() -> None:
    with pytest.raises(ConfigError, match="between 0 and 10"):
        Registry("http://127.0.0.1:1", max_retries=11)
    with pytest.raises(ConfigError, match="positive"):
        Registry("http://127.0.0.1:1", timeout_s=0)


# --- REST server going away ------------------------------------------------------------------
def test_server_stopped_mid_use_raises_unavailable_within_bound(built: Built, tmp_path: Path) -> None:
    copy = tmp_path / "mlflow.db"
    shutil.copy2(built.db, copy)
    with run_mlflow_server(f"sqlite:///{copy}", tmp_path / "artifacts") as url:
        registry = Registry(url, timeout_s=2, max_retries=1)
        assert [m.name for m in registry.list_models()] == ["credit-risk", "fraud-detector"]
    # the block has stopped the server; the same Registry object is still in use
    started = time.monotonic()

    with pytest.raises(RegistryUnavailable, match=rf"{url}.*Check MLFLOW_TRACKING_URI"):
        registry.lineage("credit-risk", "1")

    assert time.monotonic() - started < BOUND_S


def test_server_helper_fails_with_the_server_log_when_mlflow_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)mlflow server exited with code \d+.*Server log:\n.*bogus"):
        with run_mlflow_server("bogus://nowhere", tmp_path / "artifacts", startup_timeout_s=60):
            pytest.fail("the server should not have started")

