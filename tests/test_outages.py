"""The outage board: since when a store is down, fail fast while it is, recover when it answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.errors import MappingError, RegistryUnavailable, WarehouseUnavailable
from services.outages import REGISTRY, TOWER, WAREHOUSE, OutageBoard

TARGETS = {REGISTRY: "http://mlflow", WAREHOUSE: "duckdb:///w", TOWER: "sqlite:///t"}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0
        self.wall = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def tick(self, seconds: float) -> None:
        self.t += seconds
        self.wall += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def board(clock: Clock) -> OutageBoard:
    return OutageBoard(cooldown_s=10, clock=lambda: clock.t, wall=lambda: clock.wall)


def down() -> None:
    raise RegistryUnavailable("MLflow is down.")


def test_a_down_store_fails_fast_during_the_cooldown_without_being_asked(board, clock):
    with pytest.raises(RegistryUnavailable):
        board.call(REGISTRY, TARGETS, down)
    asked = []
    clock.tick(5)
    with pytest.raises(RegistryUnavailable):
        board.call(REGISTRY, TARGETS, lambda: asked.append(1))
    assert asked == []


def test_since_is_the_first_failure_of_the_outage_and_success_clears_it(board, clock):
    first = clock.wall
    with pytest.raises(RegistryUnavailable):
        board.call(REGISTRY, TARGETS, down)
    clock.tick(11)
    with pytest.raises(RegistryUnavailable):
        board.call(REGISTRY, TARGETS, down)
    assert board.since(RegistryUnavailable("x"), TARGETS) == first
    clock.tick(11)
    assert board.call(REGISTRY, TARGETS, lambda: "back") == "back"
    assert board.current(TARGETS) == []


def test_outages_are_per_store_and_per_kind(board):
    with pytest.raises(RegistryUnavailable):
        board.call(REGISTRY, TARGETS, down)
    other = {**TARGETS, REGISTRY: "http://another-mlflow"}
    assert board.call(REGISTRY, other, lambda: "fine") == "fine"
    assert board.call(WAREHOUSE, TARGETS, lambda: "fine") == "fine"
    assert [o.backend for o in board.current(TARGETS)] == [REGISTRY]


def test_an_error_of_another_store_is_recorded_against_that_store(board):
    def report() -> None:
        raise WarehouseUnavailable("the warehouse is gone")

    with pytest.raises(WarehouseUnavailable):
        board.call(TOWER, TARGETS, report)
    assert [o.backend for o in board.current(TARGETS)] == [WAREHOUSE]


def test_errors_that_are_not_outages_do_not_trip_the_board(board):
    def broken_mapping() -> None:
        raise MappingError("column missing")

    with pytest.raises(MappingError):
        board.call(WAREHOUSE, TARGETS, broken_mapping)
    assert board.current(TARGETS) == []
