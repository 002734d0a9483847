"""The fleet benchmark's main path at a tiny size: a real registry is seeded, the job, the fleet services
and the fleet page run in their children, and the page shows every seeded model.

No speed is asserted here (the machine is shared); bench/RESULTS.md holds the figures for 200 models.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from bench.fleet.cli import markdown, parse_args, run
from bench.fleet.seed import OWNERS, model_name, seed_fleet

pytestmark = pytest.mark.slow  # MLflow creates its schema (~20 s), then three child interpreters

MODELS, VERSIONS = 3, 2


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("fleet") / "fleet"
    return run(parse_args(["--models", str(MODELS), "--versions", str(VERSIONS), "--rows-per-model", "1500",
                           "--folder", str(folder)])) | {"folder": folder}


def test_the_registry_holds_every_model_with_its_versions_owner_and_aliases(record):
    client = MlflowClient(tracking_uri=f"sqlite:///{record['folder'] / 'mlflow.db'}")
    models = {m.name: m for m in client.search_registered_models()}
    assert sorted(models) == [model_name(i) for i in range(MODELS)]
    for index in range(MODELS):
        model = models[model_name(index)]
        assert model.tags["owner"] == OWNERS[index]
        aliases = {k: str(v) for k, v in model.aliases.items()}  # MLflow gives the version as a number here
        assert aliases == {"production": str(VERSIONS - 1), "staging": str(VERSIONS)}
        assert len(client.search_model_versions(f"name = '{model.name}'")) == VERSIONS


def test_the_job_services_and_page_ran_over_the_whole_fleet(record):
    job, services, page = (record["results"][k] for k in ("job", "services", "page"))
    for result in (job, services, page):
        assert "error" not in result and "timeout" not in result, result
    assert job["first"]["models"] == MODELS and job["first"]["windows"] >= MODELS * 7
    assert services["cold"]["rows"] == MODELS and services["again"]["rows"] == MODELS
    assert set(services["health"]) <= {"ok", "warning", "alert", "unknown"} and "unknown" not in services["health"]
    assert page["rows"] == MODELS
    assert page["cold"]["wall_s"] > 0 and page["warm"]["wall_s"] > 0


def test_the_section_names_both_targets_and_the_load(record):
    text = markdown(record)
    for words in ("fleet page warm < 1 s", "fleet page cold < 5 s", "monitoring job, first run", "load average",
                  f"{MODELS} models × {VERSIONS} versions"):
        assert words in text, words


def test_a_complete_seeding_is_reused_and_a_different_one_is_not(record):
    folder = record["folder"]
    again = seed_fleet(folder, MODELS, VERSIONS, 1500, quiet=True)
    assert again == record["seeded"]
