"""Shared fixtures: the demo built once per session, copied per test that breaks or changes it.

Tests never read the developer's own settings: every variable the tower reads is cleared first.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.settings import SETTINGS, Settings, load_settings

TOWER_ENV = [spec.env for spec in SETTINGS] + ["TOWER_CONFIG"]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TOWER_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full demo as `make seed` builds it (registry, warehouse, monitoring results), once per session.

    Treat it as read-only; copy it (``demo_dir``) to change it.
    """
    from services.demo.seed import seed_demo
    from services.monitoring.job import run_monitoring

    data_dir = tmp_path_factory.mktemp("demo")
    settings = load_settings({"TOWER_DATA_DIR": str(data_dir)})
    seed_demo(settings)
    run_monitoring(settings)
    return data_dir


@pytest.fixture
def demo_dir(demo_template: Path, tmp_path: Path) -> Path:
    """A private copy of the demo for a test that changes or breaks it."""
    target = tmp_path / "demo"
    shutil.copytree(demo_template, target)
    return target


@pytest.fixture
def demo_env(demo_template: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The process environment pointed at the shared demo, as `make run` would."""
    monkeypatch.setenv("TOWER_DATA_DIR", str(demo_template))
    yield load_settings()
