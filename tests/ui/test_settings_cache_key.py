"""The cached page calls key the settings by one digest per settings object (ui/backends.KEYS: Settings.fingerprint):
cheap on every call after the first, equal for equal settings, different when any mapping changes."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from services.settings import Settings, load_settings
from ui.backends import KEYS

settings_key = KEYS[Settings]


def _settings(tmp_path: Path, models: int, slo: float = 250):
    raw = {"models": {f"m{i:03d}": {"table": f"t{i}", "columns": {
        "request_id": "id", "timestamp": "ts", "version": "v", "prediction": "p", "latency_ms": "l", "status": "s"},
        "slo": {"latency_p95_ms": slo}} for i in range(models)}}
    config = tmp_path / f"tower-{models}-{slo}.yaml"
    config.write_text(yaml.safe_dump(raw))
    return load_settings({"TOWER_CONFIG": str(config), "TOWER_DATA_DIR": str(tmp_path)})


def test_equal_settings_share_a_key_and_a_changed_mapping_does_not(tmp_path):
    assert settings_key(_settings(tmp_path, 3)) == settings_key(_settings(tmp_path, 3))
    a, b = _settings(tmp_path, 3), _settings(tmp_path, 3, slo=300)
    assert a.stores_key == b.stores_key and settings_key(a) != settings_key(b)


def test_the_key_is_computed_once_per_settings_object_even_with_200_models(tmp_path):
    settings = _settings(tmp_path, 200)
    first = settings_key(settings)
    started = time.process_time()
    for _ in range(600):  # one fleet-page run's cached calls
        assert settings_key(settings) == first
    assert time.process_time() - started < 0.5  # hashing the object each time cost 58 ms a call
