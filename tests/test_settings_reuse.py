"""The app reads its settings at every script run; they are parsed again only when something changed,
and the cached reads key on a digest of them that tells any two different settings apart."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from services import wiring
from services.settings import PROJECT_ROOT, load_settings


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "tower.yaml"
    path.write_text((PROJECT_ROOT / "tower.yaml").read_text())
    monkeypatch.setenv("TOWER_CONFIG", str(path))
    monkeypatch.setenv("TOWER_DATA_DIR", str(tmp_path / "data"))
    return path


def test_the_same_settings_object_comes_back_while_nothing_changed(config: Path) -> None:
    first = wiring.load_settings()
    assert wiring.load_settings() is first


def test_an_edit_of_tower_yaml_of_the_same_size_is_read_at_the_next_run(config: Path) -> None:
    first = wiring.load_settings()
    text = config.read_text()
    edited = text.replace("latency_p95_ms: 250", "latency_p95_ms: 999", 1)
    assert edited != text and len(edited) == len(text)
    config.write_text(edited)
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 1_000))  # a coarse clock
    again = wiring.load_settings()
    assert again is not first
    assert again.models["credit-risk"].slo != first.models["credit-risk"].slo


def test_a_changed_environment_is_read_at_the_next_run(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = wiring.load_settings()
    monkeypatch.setenv("TOWER_MLFLOW_TIMEOUT_S", "3")
    again = wiring.load_settings()
    assert again is not first and again.mlflow_timeout_s == 3


def test_a_broken_config_is_refused_at_every_run_not_kept(config: Path) -> None:
    from services.errors import ConfigError

    config.write_text("models: [not, a, mapping")
    for _ in range(2):
        with pytest.raises(ConfigError, match="not valid YAML"):
            wiring.load_settings()


def test_the_digest_tells_apart_settings_that_differ_anywhere(config: Path) -> None:
    base = load_settings({"TOWER_CONFIG": str(config), "TOWER_DATA_DIR": "/tmp/x"})
    same = load_settings({"TOWER_CONFIG": str(config), "TOWER_DATA_DIR": "/tmp/x"})
    assert base is not same and base.fingerprint == same.fingerprint
    mapping = base.models["credit-risk"]
    variants = [
        load_settings({"TOWER_CONFIG": str(config), "TOWER_DATA_DIR": "/tmp/y"}),
        replace(base, models={**base.models, "credit-risk": replace(mapping, numerical=mapping.numerical[:-1])}),
        replace(base, sections={**base.sections, "policies": {}}),
        replace(base, stage_aliases={"Production": "prod"}),
        # The environment is not compared by ==, but features read their variables from it.
        replace(base, environ={**base.environ, "TOWER_ALERT_WEBHOOK_URL": "https://hooks.example/x"}),
    ]
    digests = {base.fingerprint} | {v.fingerprint for v in variants}
    assert len(digests) == 1 + len(variants)


def test_a_mapping_and_its_segment_copy_have_different_digests() -> None:
    settings = load_settings({"TOWER_DATA_DIR": "/tmp/x"})
    mapping = next(m for m in settings.models.values() if m.segments)
    segment = mapping.for_segment(mapping.segments[0].name)
    assert mapping.fingerprint != segment.fingerprint
    assert mapping.fingerprint == replace(mapping).fingerprint
