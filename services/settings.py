"""One typed settings object: environment, then tower.yaml (path in TOWER_CONFIG), then defaults.

Every setting is declared once in ``SETTINGS`` with its environment variable, its tower.yaml key
and its default; the README documents each (a test keeps the two in step).

This is the bottom layer: it knows the stores' addresses and the model mapping, and keeps the rest
of tower.yaml as raw sections. Each feature parses its own section (``auth.identity.auth_config``,
``governance.policy.policies``, ``monitoring.config.monitoring_config``) once per settings object;
``services.wiring.load_settings`` parses them all at start-up so a bad section is refused at once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml  # type: ignore[import-untyped]  # no PyYAML stubs (types-PyYAML) in the venv

from services.errors import ConfigError
from services.mapping import ModelMapping, parse_model_mapping

T = TypeVar("T")

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
# From a checkout, or an editable install of one (the image's /app), the project is the folder that
# holds services/. A wheel installs into site-packages, where no tower.yaml, .tower/ or .streamlit/
# belongs: there the working directory is the project, so a CI job that runs `tower` at its
# repository's root reads that repository's tower.yaml.
PROJECT_ROOT = Path.cwd() if {"site-packages", "dist-packages"} & set(_PACKAGE_PARENT.parts) else _PACKAGE_PARENT


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {value!r}")


def _positive_int(value: Any) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"expected a whole number of at least 1, got {value!r}")
    return number


def _positive_float(value: Any) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return number


def _non_negative_int(value: Any) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"expected a non-negative whole number, got {value!r}")
    return number


@dataclass(frozen=True)
class SettingSpec:
    """One setting: where it is read from and how its text becomes a value."""

    name: str
    env: str
    help: str
    parse: Callable[[Any], Any] = str
    default: Callable[[Path], Any] | None = None  # given the data folder


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("data_dir", "TOWER_DATA_DIR", "Folder of the embedded stores (demo registry, warehouse, tower state).",
                Path, lambda _: PROJECT_ROOT / ".tower"),
    SettingSpec("mlflow_tracking_uri", "MLFLOW_TRACKING_URI", "MLflow tracking/registry URI (sqlite:///… or http(s)://…).",
                str, lambda d: f"sqlite:///{d / 'mlflow.db'}"),
    SettingSpec("warehouse_url", "WAREHOUSE_URL", "SQLAlchemy URL of the prediction-log warehouse (read-only).",
                str, lambda d: f"duckdb:///{d / 'warehouse.duckdb'}"),
    SettingSpec("tower_db_url", "TOWER_DB_URL", "SQLAlchemy URL of the tower state (requests, ledger, monitoring).",
                str, lambda d: f"sqlite:///{d / 'tower.db'}"),
    SettingSpec("demo", "TOWER_DEMO", "Demo mode: embedded stores and demo identities are allowed.",
                _bool, lambda _: False),
    # 3 s x (1 retry + 1): a dead or stalled tracking server is reported within 10 s (the fault-tolerance promise).
    SettingSpec("mlflow_timeout_s", "TOWER_MLFLOW_TIMEOUT_S", "Seconds before an MLflow HTTP request gives up.",
                _positive_float, lambda _: 3.0),
    SettingSpec("mlflow_max_retries", "TOWER_MLFLOW_MAX_RETRIES", "Retries of a failed MLflow HTTP request.",
                _non_negative_int, lambda _: 1),
    SettingSpec("warehouse_timeout_s", "TOWER_WAREHOUSE_TIMEOUT_S", "Seconds a warehouse connection may take to open.",
                _positive_float, lambda _: 5.0),
    SettingSpec("warehouse_statement_timeout_s", "TOWER_WAREHOUSE_STATEMENT_TIMEOUT_S",
                "Seconds a warehouse query may run before the database cancels it (PostgreSQL).",
                _positive_float, lambda _: 30.0),
    SettingSpec("use_legacy_stages", "TOWER_USE_LEGACY_STAGES",
                "Read stages from MLflow's deprecated model-version stages instead of aliases.",
                _bool, lambda _: False),
    # 3: measured against 2, 4 and no gate at 50 sessions starting at once on 2 cores (bench/RESULTS.md,
    # protocol load); more lets the script threads starve the event loop that sends every page.
    SettingSpec("page_run_slots", "TOWER_PAGE_RUN_SLOTS",
                "Page runs of a server process that do their data work at once; the others show a title and wait.",
                _positive_int, lambda _: 3),
)
# The stage names users see and the registry aliases that implement them (docs/ARCHITECTURE.md, contracts).
DEFAULT_STAGE_ALIASES = {"Production": "production", "Staging": "staging"}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    mlflow_tracking_uri: str
    warehouse_url: str
    tower_db_url: str
    demo: bool
    mlflow_timeout_s: float
    mlflow_max_retries: int
    warehouse_timeout_s: float
    warehouse_statement_timeout_s: float
    use_legacy_stages: bool
    page_run_slots: int = 3
    config_path: Path | None = None
    models: dict[str, ModelMapping] = field(default_factory=dict)
    stage_aliases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_STAGE_ALIASES))
    sections: dict[str, Any] = field(default_factory=dict)  # tower.yaml's other sections, unparsed
    # The environment the settings were read from (features read their own variables from it).
    environ: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    _parsed: dict[str, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    def model(self, name: str) -> ModelMapping | None:
        return self.models.get(name)

    @property
    def stores_key(self) -> tuple[Any, ...]:
        """What identifies the stores and how they are reached: settings equal on this share engines."""
        return (self.mlflow_tracking_uri, self.mlflow_timeout_s, self.mlflow_max_retries, self.warehouse_url,
                self.warehouse_timeout_s, self.warehouse_statement_timeout_s, self.tower_db_url,
                repr(self.sections.get("warehouse")))  # the warehouse engine's DuckDB settings

    def parsed(self, section: str, parse: Callable[[Any], T]) -> T:
        """tower.yaml's ``section`` parsed by its feature's ``parse``, once per settings object."""
        if section not in self._parsed:
            self._parsed[section] = parse(self.sections.get(section))
        return cast(T, self._parsed[section])

    @cached_property
    def fingerprint(self) -> str:
        """A digest of everything these settings say, the environment they were read from included:
        equal digests, equal settings. The pages' cached reads key on it: Streamlit's hasher would
        otherwise walk the whole object (models, sections, the environment) field by field on every
        call, a few milliseconds each, dozens of calls per page run (bench/RESULTS.md, protocol load)."""
        text = repr(self) + repr(sorted(self.environ.items()))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def __hash__(self) -> int:  # so pages may pass settings into cached functions
        return hash((self.mlflow_tracking_uri, self.warehouse_url, self.tower_db_url, self.config_path))


def refuse_unknown_keys(where: str, raw: Mapping[Any, Any], known: set[str] | frozenset[str]) -> None:
    """ConfigError naming the keys of ``raw`` that ``where`` does not know, and the ones it does:
    a misspelt key must never be ignored silently (a policy that looks stricter than it is)."""
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                          f"known keys are {', '.join(sorted(known))}.")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"Cannot read the tower configuration {path}: {exc.strerror}.",
                          "Set TOWER_CONFIG to an existing tower.yaml.") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}.") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level.")
    return raw


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings once; raise ConfigError naming the first bad value."""
    env = os.environ if environ is None else environ
    config_env = env.get("TOWER_CONFIG")
    config_path = Path(config_env) if config_env else PROJECT_ROOT / "tower.yaml"
    if config_env and not config_path.is_file():
        raise ConfigError(f"TOWER_CONFIG points to {config_path}, which does not exist.")
    config = _read_yaml(config_path) if config_path.is_file() else {}

    values: dict[str, Any] = {}
    for spec in SETTINGS:
        if spec.env in env and env[spec.env] != "":
            raw, source = env[spec.env], spec.env
        elif spec.name in config:
            raw, source = config[spec.name], f"{config_path}: {spec.name}"
        else:
            assert spec.default is not None  # every entry of SETTINGS has a default
            values[spec.name] = spec.default(values.get("data_dir", PROJECT_ROOT / ".tower"))
            continue
        try:
            values[spec.name] = spec.parse(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Setting {source} is invalid: {exc}.") from exc

    models_raw = config.get("models") or {}
    if not isinstance(models_raw, dict):
        raise ConfigError(f"{config_path}: models must map model names to their log tables.")
    stages = config.get("stages") or DEFAULT_STAGE_ALIASES
    if not isinstance(stages, dict) or not all(isinstance(v, str) for v in stages.values()):
        raise ConfigError(f"{config_path}: stages must map stage names to alias names.")
    models = {str(name): parse_model_mapping(str(name), raw) for name, raw in models_raw.items()}
    own = {spec.name for spec in SETTINGS} | {"models", "stages"}
    return Settings(
        **values,
        config_path=config_path if config_path.is_file() else None,
        models=models,
        stage_aliases={str(k): v for k, v in stages.items()},
        sections={str(k): v for k, v in config.items() if k not in own},
        environ=dict(env),
    )
