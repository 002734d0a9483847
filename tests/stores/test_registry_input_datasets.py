"""Registry.input_datasets: what a version's run logged with mlflow.log_input, read from a real sqlite registry."""

from __future__ import annotations

import mlflow.data
import pytest

from services.errors import NotFound, RegistryUnavailable
from services.stores.registry import Registry
from tests.support.registry_reference import MODEL, TRAINING_TABLE, VERSIONS, build_registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    built = build_registry(tmp_path_factory.mktemp("inputs") / "mlflow.db", sources={2: None})
    return Registry(built.tracking_uri)


def test_a_versions_training_dataset_comes_back_with_digest_source_row_count_and_schema(registry):
    (found,) = registry.input_datasets(MODEL, "1")
    frame = VERSIONS[1][1]
    assert found.name == TRAINING_TABLE and found.context == "training"
    assert found.digest == mlflow.data.from_pandas(frame).digest  # MLflow's own digest of the logged frame
    assert '"uri": "warehouse://features.credit_model_training@2026.01.01"' in found.source
    assert found.source_type == "warehouse_table"
    assert found.num_rows == len(frame)
    assert found.columns == (("income", "double"), ("age", "long"), ("region", "string"), ("label", "long"))


def test_another_context_or_a_run_without_datasets_gives_none(registry):
    assert registry.input_datasets(MODEL, "1", context="evaluation") == ()
    assert registry.input_datasets(MODEL, "2") == ()
    assert len(registry.input_datasets(MODEL, "1", context=None)) == 1


def test_an_unknown_version_is_not_found_and_an_unreachable_registry_is_unavailable(registry):
    with pytest.raises(NotFound, match="Version '9'"):
        registry.input_datasets(MODEL, "9")
    with pytest.raises(RegistryUnavailable, match="cannot be used"):
        Registry("http://127.0.0.1:9", timeout_s=1, max_retries=0).input_datasets(MODEL, "1")
