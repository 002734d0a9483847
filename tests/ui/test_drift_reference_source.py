"""The drift explorer names the reference it compares with when the model's reference comes from the
registry (loan-approval in the demo): the production version's training dataset with its digest, source,
version and verification; or, when that cannot be resolved, why and which configured reference it uses."""

from __future__ import annotations

import pytest
import yaml

from services.settings import PROJECT_ROOT
from tests.support.app_test import open_page, texts

pytestmark = pytest.mark.both_backends

PAGE = "app_pages/drift.py"


def test_the_page_names_the_production_versions_training_dataset_and_its_verification(demo_env):
    at = open_page(PAGE, model="loan-approval")
    assert not at.exception and not at.error
    said = texts(at, ("caption",))
    assert "Reference: the training dataset loan_approval_training (digest " in said, said
    assert "of version 2, source warehouse://features.loan_approval_training@" in said
    assert "verified (digest, row count and columns match what MLflow logged)" in said
    compared = next(str(c.value).replace("\\", "") for c in at.caption if "reference rows" in str(c.value))
    assert "the training data of version 2 (loan_approval_training, digest" in compared, compared
    assert "reference_loan_approval" not in compared


def test_an_unresolvable_source_is_said_and_the_configured_table_is_used(demo_env, monkeypatch, tmp_path):
    config = yaml.safe_load((PROJECT_ROOT / "tower.yaml").read_text())
    config["reference_sources"][0]["tables"] = ["features.credit_risk_training"]  # loan-approval's no longer allowed
    (tmp_path / "tower.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("TOWER_CONFIG", str(tmp_path / "tower.yaml"))
    at = open_page(PAGE, model="loan-approval")
    assert not at.exception and not at.error
    warned = texts(at, ("warning",))
    assert "Version 2 of loan-approval" in warned and "not among the tables" in warned, warned
    assert "Using the reference table reference_loan_approval instead." in warned
    compared = next(str(c.value).replace("\\", "") for c in at.caption if "reference rows" in str(c.value))
    assert "reference_loan_approval" in compared


def test_the_next_page_load_after_a_promotion_compares_with_the_new_versions_training_data(demo_dir, monkeypatch):
    from services import wiring

    monkeypatch.setenv("TOWER_DATA_DIR", str(demo_dir))
    settings = wiring.load_settings()
    before = texts(open_page(PAGE, model="loan-approval"), ("caption",))
    assert "of version 2, source" in before
    wiring.registry(settings).set_alias("loan-approval", settings.stage_aliases["Production"], "1")
    after = open_page(PAGE, model="loan-approval")  # within the minute the other reads stay cached
    assert not after.exception
    said = texts(after, ("caption",))
    assert "of version 1, source" in said and "of version 2, source" not in said, said
    compared = next(str(c.value).replace("\\", "") for c in after.caption if "reference rows" in str(c.value))
    assert "the training data of version 1 (loan_approval_training" in compared, compared
