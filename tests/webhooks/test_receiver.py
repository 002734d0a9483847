"""The receiver over HTTP on loopback, on the real registry, warehouse and tower state: what files a
request, and every way a delivery must record nothing, or nothing twice."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from services.governance import review_state
from services.governance.evidence import PASSED
from services.stores.registry import Registry
from services.webhooks import deliveries
from services.webhooks.server import Receiver
from tests.webhooks.conftest import Hook, open_hook, serving, signed


def _roc_auc(hook: Hook, version: str) -> float:
    client = hook.world.client
    return client.get_run(client.get_model_version("credit-risk", version).run_id).data.metrics["roc_auc"]


def test_a_new_version_whose_gates_pass_is_requested_for_the_policys_stage_with_its_evidence(hook: Hook) -> None:
    headers, body = signed("credit-risk", "3")
    answer = hook.post(headers, body)
    assert answer.status_code == 200, answer.text
    (request,) = hook.requests_of("credit-risk")
    assert (request.version, request.stage, request.status) == ("3", "Staging", "open")
    assert request.requester_name == "service:ci-bot" and answer.json()["request_id"] == request.id
    assert headers["X-MLflow-Delivery-Id"] in request.reason
    evidence = review_state.evidence_snapshot(hook.world.ctx, request.evidence_digest or "")
    assert evidence is not None and evidence.holder is not None and evidence.holder.version == "2"
    (gate,) = evidence.gates
    # the numbers against MLflow itself: v3 0.845 vs the Staging holder v2 0.85
    assert gate.name == "metric:roc_auc" and gate.status == PASSED
    assert gate.candidate == pytest.approx(_roc_auc(hook, "3")) and gate.holder == pytest.approx(_roc_auc(hook, "2"))
    (row,) = hook.deliveries()
    assert row["status"] == "done" and row["request_id"] == request.id and row["outcome"].startswith("filed request")


def test_a_redelivery_of_the_same_id_records_nothing_more(hook: Hook) -> None:
    headers, body = signed("credit-risk", "3")
    first = hook.post(headers, body)
    rows = hook.ledger_rows()
    again = hook.post(headers, body)  # MLflow's retry: the same id, timestamp and signature
    assert again.status_code == 200 and "duplicate delivery" in again.json()["outcome"]
    assert again.json()["request_id"] == first.json()["request_id"]
    assert hook.ledger_rows() == rows and len(hook.requests_of("credit-risk")) == 1 and len(hook.deliveries()) == 1


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_racing_deliveries_of_one_id_record_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    with open_hook(tmp_path, monkeypatch, kind) as hook:
        headers, body = signed("credit-risk", "3")
        start = threading.Barrier(4)
        answers: list[int] = []

        def deliver() -> None:
            start.wait(timeout=30)
            answers.append(hook.post(headers, body).status_code)

        threads = [threading.Thread(target=deliver) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        # one handled it; the others saw it done (200) or still in hand (503, MLflow retries later)
        assert answers.count(200) >= 1 and set(answers) <= {200, 503}, answers
        assert len(hook.requests_of("credit-risk")) == 1 and len(hook.deliveries()) == 1
        assert hook.ledger_rows() == 1
        retry = hook.post(headers, body)  # the 503s' retry
        assert retry.status_code == 200 and "duplicate" in retry.json()["outcome"] and hook.ledger_rows() == 1


def test_two_deliveries_of_one_version_under_different_ids_still_file_one_request(hook: Hook) -> None:
    # A webhook registered twice, or MLflow re-sending under a new id: the open-request rule holds.
    assert hook.post(*signed("credit-risk", "3")).status_code == 200
    second = hook.post(*signed("credit-risk", "3"))
    assert second.status_code == 200 and "already open; nothing new recorded" in second.json()["outcome"]
    assert len(hook.requests_of("credit-risk")) == 1 and hook.ledger_rows() == 1 and len(hook.deliveries()) == 2


@pytest.mark.parametrize(("mangle", "status"), [
    (lambda h, b: ({**h, "X-MLflow-Signature": signed("credit-risk", "3", secret="x" * 30)[0]["X-MLflow-Signature"]},
                   b), 401),
    (lambda h, b: ({k: v for k, v in h.items() if k != "X-MLflow-Signature"}, b), 401),
    (lambda h, b: (h, b.replace(b'"3"', b'"4"')), 401),
])
def test_a_bad_signature_is_refused_401_and_nothing_is_recorded(hook: Hook, mangle, status: int) -> None:
    answer = hook.post(*mangle(*signed("credit-risk", "3")))
    assert answer.status_code == status
    assert "signature does not match" in answer.json()["outcome"] or "not signed" in answer.json()["outcome"]
    assert hook.deliveries() == [] and hook.requests_of("credit-risk") == []


def test_a_replayed_capture_with_an_old_timestamp_is_refused_400_and_nothing_is_recorded(hook: Hook) -> None:
    answer = hook.post(*signed("credit-risk", "3", timestamp=int(time.time()) - 301))
    assert answer.status_code == 400 and "replay" in answer.json()["outcome"]
    assert hook.deliveries() == [] and hook.requests_of("credit-risk") == []


def test_a_replay_of_a_handled_delivery_after_the_window_is_refused_400_not_answered_from_the_table(
        hook: Hook) -> None:
    headers, body = signed("credit-risk", "3")
    assert hook.post(headers, body).status_code == 200
    hook.receiver.clock = lambda: time.time() + 3600  # an hour later the same capture is played again
    assert hook.post(headers, body).status_code == 400
    assert len(hook.deliveries()) == 1 and hook.ledger_rows() == 1


def test_an_unknown_event_is_refused_400_and_nothing_is_recorded(hook: Hook) -> None:
    answer = hook.post(*signed("credit-risk", "3", event=("model_version_alias", "created")))
    assert answer.status_code == 400 and "not handled" in answer.json()["outcome"]
    assert hook.deliveries() == [] and hook.requests_of("credit-risk") == []


def test_a_model_the_tower_does_not_govern_records_nothing(hook: Hook) -> None:
    from tests.support.governance import HOSTILE_MODEL

    for model in (HOSTILE_MODEL, "example_model"):  # in the registry, only under the default policy; MLflow's test
        answer = hook.post(*signed(model, "2"))
        assert answer.status_code == 200 and "not governed" in answer.json()["outcome"]
    assert hook.deliveries() == [] and hook.ledger_rows() == 0


def test_without_auto_request_the_gates_are_evaluated_and_nothing_is_filed(hook: Hook) -> None:
    answer = hook.post(*signed("fraud-detection", "3"))
    assert answer.status_code == 200
    outcome = answer.json()["outcome"]
    assert outcome.startswith("nothing filed (the policy has no auto_request)")
    # v3 served no traffic, so its SLO latency gate has no data (fails) toward either stage
    assert "FAIL fraud-detection v3 → Production: 1 gate(s) did not pass (against v1): latency_p95_ms" in outcome
    assert "FAIL fraud-detection v3 → Staging: 1 gate(s) did not pass (against nobody): latency_p95_ms" in outcome
    assert hook.ledger_rows() == 0 and [d["outcome"] for d in hook.deliveries()] == [outcome]


@pytest.mark.parametrize(("version", "gate"), [("4", "metric:roc_auc"), ("5", "metric:roc_auc")])
def test_a_candidate_whose_gate_fails_or_lacks_data_is_not_requested(hook: Hook, version: str, gate: str) -> None:
    answer = hook.post(*signed("credit-risk", version))
    assert answer.status_code == 200
    assert answer.json()["outcome"].startswith(f"nothing filed: FAIL credit-risk v{version}")
    assert gate in answer.json()["outcome"] and hook.ledger_rows() == 0


def test_a_version_missing_from_the_registry_is_recorded_as_refused_and_not_retried(hook: Hook) -> None:
    headers, body = signed("credit-risk", "99")
    answer = hook.post(headers, body)
    assert answer.status_code == 200 and answer.json()["outcome"].startswith("refused:") and "99" in answer.text
    assert hook.post(headers, body).json()["outcome"].startswith("duplicate delivery, already handled: refused:")
    assert hook.ledger_rows() == 0


def test_a_registry_outage_answers_503_keeps_nothing_and_the_retry_files_the_request(hook: Hook) -> None:
    headers, body = signed("credit-risk", "3")
    down = Registry("http://127.0.0.1:9", timeout_s=1, max_retries=0)  # nothing listens on the discard port
    broken = Receiver(ctx=dataclasses.replace(hook.world.ctx, registry=down), actor=hook.actor,
                      secret=hook.receiver.secret)
    with serving(broken) as url:
        import requests

        answer = requests.post(url, data=body, headers=headers, timeout=60)
    assert answer.status_code == 503 and "retry" in answer.json()["outcome"] and answer.headers["Retry-After"] == "5"
    assert hook.deliveries() == [] and hook.ledger_rows() == 0
    retry = hook.post(headers, body)  # MLflow's retry reaches a receiver whose registry answers
    assert retry.status_code == 200 and retry.json()["outcome"].startswith("filed request")


def test_a_delivery_left_half_done_by_a_dead_process_is_taken_over_after_its_lease(hook: Hook) -> None:
    headers, body = signed("credit-risk", "3")
    delivery_id = headers["X-MLflow-Delivery-Id"]
    ctx = hook.world.ctx
    # What a process that died between claiming the delivery and filing the request leaves behind.
    dead = deliveries.claim(ctx.engine, delivery_id, "model_version.created", "credit-risk", "3", now=ctx.now())
    assert dead.token is not None
    busy = hook.post(headers, body)  # within the lease the holder may still be working
    assert busy.status_code == 503 and hook.ledger_rows() == 0
    hook.receiver.lease = timedelta(0)  # the lease has run out
    taken = hook.post(headers, body)
    assert taken.status_code == 200 and taken.json()["outcome"].startswith("filed request")
    (row,) = hook.deliveries()
    assert row["attempts"] == 2 and row["status"] == "done"
    # the dead holder cannot overwrite the taker's outcome
    assert not deliveries.finish(ctx.engine, delivery_id, dead.token, now=ctx.now(), outcome="late")


def test_a_crash_after_filing_but_before_recording_the_outcome_files_nothing_twice(hook: Hook) -> None:
    from services.governance.promotion import request_promotion

    headers, body = signed("credit-risk", "3")
    ctx = hook.world.ctx
    deliveries.claim(ctx.engine, headers["X-MLflow-Delivery-Id"], "model_version.created", "credit-risk", "3",
                     now=ctx.now() - timedelta(hours=1))
    request_promotion(ctx, hook.actor, "credit-risk", "3", "Staging", "filed, then the process died")
    from services.webhooks.handler import resume_stuck

    ((delivery_id, handled),) = resume_stuck(ctx, hook.actor)  # the receiver's start-up pass
    assert delivery_id == headers["X-MLflow-Delivery-Id"] and "already open" in handled.outcome
    assert hook.ledger_rows() == 1 and len(hook.requests_of("credit-risk")) == 1
    assert hook.post(headers, body).json()["outcome"].startswith("duplicate delivery")


def _raw(url: str, request: bytes) -> bytes:
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        return conn.recv(4096)


def test_a_huge_body_is_refused_413_unread_and_a_body_without_length_411(hook: Hook) -> None:
    headers, body = signed("credit-risk", "3")
    huge = _raw(hook.url, b"POST /mlflow-webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n")
    assert huge.startswith(b"HTTP/1.0 413") or huge.startswith(b"HTTP/1.1 413")
    chunked = _raw(hook.url, b"POST /mlflow-webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert b" 411 " in chunked.split(b"\r\n")[0]
    assert hook.deliveries() == [] and hook.ledger_rows() == 0
    assert hook.post(headers, body).status_code == 200  # the receiver still serves
