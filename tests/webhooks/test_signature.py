"""MLflow's signature, verified: what MLflow's own sender signs is accepted; a changed byte, another
secret, a missing or malformed header, an old or a future timestamp are refused with the right status."""

from __future__ import annotations

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from services.webhooks.signature import RejectedDelivery, sign, verify
from tests.webhooks.conftest import SECRET, signed

NOW = 1_800_000_000


def _at(now: int) -> tuple[dict[str, str], bytes]:
    return signed("credit-risk", "3", timestamp=now)


def test_a_delivery_signed_by_mlflows_own_code_is_accepted_with_its_id_and_timestamp() -> None:
    headers, body = _at(NOW)
    got = verify(SECRET, headers, body, now=NOW + 10)
    assert got.delivery_id == headers["X-MLflow-Delivery-Id"] and got.timestamp == NOW
    # our signer agrees with MLflow's byte for byte (the tests sign with either)
    assert sign(SECRET, "abc", "12", b'{"a": 1}') == _generate_hmac_signature(SECRET, "abc", "12", '{"a": 1}')


def test_header_names_are_case_insensitive_as_http_says() -> None:
    headers, body = _at(NOW)
    assert verify(SECRET, {k.lower(): v for k, v in headers.items()}, body, now=NOW).timestamp == NOW


@pytest.mark.parametrize("tamper", [
    lambda h, b: (h, b.replace(b'"credit-risk"', b'"credit-risj"')),          # one byte of the body
    lambda h, b: (h, b + b" "),                                                # a trailing space
    lambda h, b: ({**h, "X-MLflow-Timestamp": str(NOW + 1)}, b),               # the timestamp moved
    lambda h, b: ({**h, "X-MLflow-Delivery-Id": "another-id"}, b),             # a new id for a replay
    lambda h, b: ({**h, "X-MLflow-Signature": h["X-MLflow-Signature"].replace("v1,", "v2,")}, b),
    lambda h, b: ({**h, "X-MLflow-Signature": "v1,"}, b),
])
def test_a_tampered_delivery_is_refused_401(tamper) -> None:
    headers, body = tamper(*_at(NOW))
    with pytest.raises(RejectedDelivery, match="signature does not match") as caught:
        verify(SECRET, headers, body, now=NOW)
    assert caught.value.status == 401


def test_a_delivery_signed_with_another_secret_is_refused_401() -> None:
    headers, body = signed("credit-risk", "3", timestamp=NOW, secret="another-secret-of-24-chars!!")
    with pytest.raises(RejectedDelivery) as caught:
        verify(SECRET, headers, body, now=NOW)
    assert caught.value.status == 401


@pytest.mark.parametrize("missing", ["X-MLflow-Signature", "X-MLflow-Timestamp", "X-MLflow-Delivery-Id"])
def test_a_missing_header_is_refused_401(missing: str) -> None:
    headers, body = _at(NOW)
    del headers[missing]
    with pytest.raises(RejectedDelivery, match="not signed") as caught:
        verify(SECRET, headers, body, now=NOW)
    assert caught.value.status == 401


@pytest.mark.parametrize(("header", "value"), [
    ("X-MLflow-Delivery-Id", "x" * 65), ("X-MLflow-Delivery-Id", "id with spaces"), ("X-MLflow-Delivery-Id", ""),
    ("X-MLflow-Delivery-Id", "ünïcode"), ("X-MLflow-Timestamp", "-5"), ("X-MLflow-Timestamp", "1e9"),
    ("X-MLflow-Timestamp", "9" * 40), ("X-MLflow-Timestamp", "nan"),
])
def test_malformed_headers_are_refused_401_even_when_signed(header: str, value: str) -> None:
    headers, body = _at(NOW)
    headers[header] = value  # the attacker holds the secret here: the shape alone is refused
    headers["X-MLflow-Signature"] = sign(SECRET, headers["X-MLflow-Delivery-Id"], headers["X-MLflow-Timestamp"], body) \
        if headers["X-MLflow-Delivery-Id"].isascii() and headers["X-MLflow-Timestamp"].isascii() else "v1,x"
    with pytest.raises(RejectedDelivery, match="malformed") as caught:
        verify(SECRET, headers, body, now=NOW)
    assert caught.value.status == 401


@pytest.mark.parametrize(("age", "said"), [(301, "old"), (86_400 * 30, "old"), (-301, "future")])
def test_a_timestamp_outside_the_window_is_refused_400_as_a_replay(age: int, said: str) -> None:
    headers, body = _at(NOW - age)
    with pytest.raises(RejectedDelivery, match=said) as caught:
        verify(SECRET, headers, body, now=NOW)
    assert caught.value.status == 400
    assert verify(SECRET, headers, body, now=NOW, tolerance_s=abs(age) + 1).timestamp == NOW - age


def test_the_window_edge_is_inclusive_and_the_tolerance_configurable() -> None:
    headers, body = _at(NOW - 300)
    assert verify(SECRET, headers, body, now=NOW).timestamp == NOW - 300
    with pytest.raises(RejectedDelivery):
        verify(SECRET, headers, body, now=NOW, tolerance_s=60)


def test_one_matching_signature_among_several_is_enough_as_during_a_secret_rotation() -> None:
    headers, body = _at(NOW)
    headers["X-MLflow-Signature"] = "v1,bm90LWl0 " + headers["X-MLflow-Signature"]
    assert verify(SECRET, headers, body, now=NOW).timestamp == NOW
