"""`tower gate` on the seeded demo: the policy's gates as a request would record them, an exit code
CI can fail on (0 pass, 1 a gate blocks, 2 bad input), reports CI systems read, and nothing
recorded unless `--request` files the request once every gate passes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from mlflow.tracking import MlflowClient

from services import cli
from services.auth.identity import DEMO_SERVICE_TOKEN
from services.settings import load_settings

FAILING = ["gate", "--model", "credit-risk", "--version", "4", "--to", "Production"]
PASSING = ["gate", "--model", "demand-forecast", "--version", "3", "--to", "Staging"]


def _ledger_rows(settings) -> int:
    with sqlite3.connect(settings.tower_db_url.removeprefix("sqlite:///")) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "governance_ledger" not in tables:
            return 0
        return con.execute("SELECT COUNT(*) FROM governance_ledger").fetchone()[0]


def _roc_auc(settings, model: str, version: str) -> float:
    client = MlflowClient(settings.mlflow_tracking_uri)
    return client.get_run(client.get_model_version(model, version).run_id).data.metrics["roc_auc"]


def test_a_candidate_that_regresses_roc_auc_fails_with_exit_1_and_says_why(demo_env, capsys) -> None:
    regression = _roc_auc(demo_env, "credit-risk", "3") - _roc_auc(demo_env, "credit-risk", "4")
    assert regression > 0.01, "the demo's story: v4 drops ROC AUC by more than the policy allows"
    before = _ledger_rows(demo_env)
    assert cli.main(FAILING) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL credit-risk v4 → Production") and "metric:roc_auc" in out.splitlines()[0]
    assert f"a regression of {regression:.6g}" in out
    assert _ledger_rows(demo_env) == before, "a gate records nothing"


def test_a_passing_candidate_exits_0_and_a_gate_without_data_passes_only_where_the_policy_says(
        demo_env, capsys) -> None:
    assert cli.main(PASSING) == 0
    out = capsys.readouterr().out
    assert out.startswith("PASS demand-forecast v3 → Staging")
    assert "no data (passes by policy)" in out  # demand-forecast: no_data {fairness_dpd: pass}
    assert cli.main(["gate", "--model", "demand-forecast", "--version", "4", "--to", "Production"]) == 1
    assert "latency_p95_ms       no data (fails)" in capsys.readouterr().out  # the other gates still fail


@pytest.mark.parametrize(("argv", "said"), [
    (["--model", "no-such-model", "--version", "1", "--to", "Production"], "not in the registry"),
    (["--model", "credit-risk", "--version", "99", "--to", "Production"], "99"),
    (["--model", "credit-risk", "--version", "03", "--to", "Production"], "canonical"),
    (["--model", "credit-risk", "--version", "4", "--to", "Nowhere"], "Nowhere"),
    (["--model", "credit-risk", "--version", "3", "--to", "Production"], "already holds"),
])
def test_bad_input_exits_2_with_one_clear_line(demo_env, capsys, argv, said) -> None:
    assert cli.main(["gate", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and said in captured.err


def test_an_unreachable_registry_exits_2(demo_env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("TOWER_MLFLOW_TIMEOUT_S", "2")
    assert cli.main(FAILING) == 2
    assert "registry" in capsys.readouterr().err.lower()


def test_the_junit_report_parses_with_one_case_per_gate_and_the_blocking_ones_failed(
        demo_env, tmp_path: Path, capsys) -> None:
    report = tmp_path / "gate.xml"
    assert cli.main([*FAILING, "--format", "junit", "--output", str(report)]) == 1
    assert capsys.readouterr().out.startswith("FAIL")  # the log still says it
    suites = ET.parse(report).getroot()
    assert suites.tag == "testsuites"
    (suite,) = suites.findall("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"metric:roc_auc", "latency_p95_ms", "drift_share", "fairness_dpd"}
    failed = {name for name, c in cases.items() if c.find("failure") is not None}
    assert failed == {"metric:roc_auc", "drift_share"}
    assert int(suite.get("tests")) == 4 and int(suite.get("failures")) == 2


def test_json_and_markdown_say_the_same_verdict(demo_env, capsys) -> None:
    assert cli.main([*FAILING, "--format", "json"]) == 1
    body = json.loads(capsys.readouterr().out)
    assert body["passed"] is False and body["blocking"] == ["metric:roc_auc", "drift_share"]
    assert cli.main([*PASSING, "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("### ✅ tower gate: demand-forecast v3 → Staging")
    assert markdown.count("\n| `") == 4  # one table row per gate


def test_gate_request_files_the_request_only_when_every_gate_passes(demo_dir, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TOWER_DATA_DIR", str(demo_dir))
    monkeypatch.setenv("TOWER_SERVICE_ACCOUNT", "ci-bot")
    monkeypatch.setenv("TOWER_SERVICE_TOKEN", DEMO_SERVICE_TOKEN)
    monkeypatch.setenv("TOWER_DEMO", "1")  # the published demo token is good only in demo mode
    settings = load_settings()
    assert cli.main([*FAILING, "--request"]) == 1
    assert "no request filed" in capsys.readouterr().err
    before = _ledger_rows(settings)
    assert cli.main([*PASSING, "--request", "--on-behalf-of", "Dave Kim"]) == 0
    err = capsys.readouterr().err
    assert "filed" in err and _ledger_rows(settings) == before + 1
    assert cli.main([*PASSING, "--request"]) == 0  # a retry of the pipeline: nothing twice
    assert "already open" in capsys.readouterr().err and _ledger_rows(settings) == before + 1


def test_gate_request_as_a_bot_without_its_token_exits_2_before_reading_any_store(demo_dir, monkeypatch,
                                                                                  capsys) -> None:
    monkeypatch.setenv("TOWER_DATA_DIR", str(demo_dir))
    monkeypatch.setenv("TOWER_DEMO", "1")
    monkeypatch.setenv("TOWER_SERVICE_ACCOUNT", "ci-bot")  # the account's name alone is not enough
    monkeypatch.delenv("TOWER_SERVICE_TOKEN", raising=False)
    before = _ledger_rows(load_settings())
    assert cli.main([*PASSING, "--request"]) == 2
    assert "TOWER_SERVICE_TOKEN" in capsys.readouterr().err
    assert _ledger_rows(load_settings()) == before
