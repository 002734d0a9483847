"""Every MLflow call of the app: registered models, versions, aliases, legacy stages, runs, lineage.

Metadata only. The only writes are the governance projection's (aliases, legacy stage
transitions, the tower's audit and state tags); they are called by ``services.governance`` after
authorization, never by a page. Nothing here loads a model artifact (no ``mlflow.*.load_model``, no
artifact download): deserializing a model runs its code, and the dashboard must never do that.

Errors reach callers as the typed family of ``services.errors``: a missing model or version is
``NotFound``; an unreachable server, a broken or missing database, a refused request or any other
MLflow failure is ``RegistryUnavailable`` with a message naming the tracking URI (password hidden).
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import requests
import sqlalchemy.exc
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from services.errors import ConfigError, NotFound, RegistryUnavailable
from services.stores.registry_connection import (
    apply_environment,
    describe_failure,
    http_environment,
    local_store_path,
    redact_uri,
    uri_password,
)
from services.stores.registry_records import DatasetRef, InputDataset, Lineage, ModelSummary, VersionInfo

_log = logging.getLogger(__name__)
T = TypeVar("T")

_HINT = "Check MLFLOW_TRACKING_URI and that the tracking server or its database is running."
_AUTH_HINT = "Check MLFLOW_TRACKING_URI and the credentials (MLFLOW_TRACKING_USERNAME/PASSWORD or _TOKEN)."
_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
_AUTH_CODES = {"PERMISSION_DENIED", "UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED"}
_MAX_RETRIES_LIMIT = 10  # MLflow refuses more (_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT)
_MODELS_PAGE = 1000  # SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD
_VERSIONS_PAGE = 10000  # SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT


# ----------------------------------------------------------------------------------------------
# Reading MLflow's entities
# ----------------------------------------------------------------------------------------------
def _utc(ms: int | None) -> datetime | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _version_key(version: str) -> tuple[int, str]:
    try:
        return int(version), version
    except (TypeError, ValueError):
        return -1, str(version)


def _model_id(mv: Any) -> str | None:
    """The logged model behind a version.

    MLflow 3's OSS stores do not keep ``model_id`` on the version (it comes back None); the id is
    in the source, ``models:/<model_id>`` (a name/version or @alias form is not an id).
    """
    if getattr(mv, "model_id", None):
        return str(mv.model_id)
    parts = urlsplit(mv.source or "")
    if parts.scheme != "models":
        return None
    segments = parts.path.lstrip("/").split("/")
    if len(segments) == 1 and segments[0] and "@" not in segments[0]:
        return segments[0]
    return None


def _aliases_by_version(aliases: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    inverted: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        inverted.setdefault(str(version), []).append(alias)
    return {version: tuple(sorted(names)) for version, names in inverted.items()}


def _name_filter(name: str) -> str | None:
    """An MLflow filter string selecting one model's versions (None: cannot be quoted)."""
    if "'" not in name:
        return f"name = '{name}'"
    if '"' not in name:
        return f'name = "{name}"'
    return None


def _dataset_source(raw: str | None) -> str:
    """The readable location inside a dataset's JSON source description."""
    if not raw:
        return ""
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        return raw
    if isinstance(parsed, dict):
        for key in ("url", "uri", "path", "table_name", "source"):
            if parsed.get(key):
                return str(parsed[key])
    return raw


def _json_object(raw: str | None) -> dict[str, Any]:
    """A dataset's profile or schema text as a dict ({} when absent or not a JSON object)."""
    try:
        parsed = json.loads(raw or "")
    except (TypeError, ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _num_rows(profile: dict[str, Any]) -> int | None:
    rows = profile.get("num_rows")
    return rows if isinstance(rows, int) and not isinstance(rows, bool) and rows >= 0 else None


def _schema_columns(schema: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """(name, type) of MLflow's column-based schema (``mlflow_colspec``); () for any other schema."""
    specs = schema.get("mlflow_colspec")
    if not isinstance(specs, list):
        return ()
    return tuple((str(c["name"]), str(c.get("type", ""))) for c in specs if isinstance(c, dict) and "name" in c)


def _context(dataset_input: Any) -> str | None:
    return next((t.value for t in dataset_input.tags or [] if t.key == "mlflow.data.context"), None)


class _Missing(NotFound):
    """Internal: an optional object (run, logged model) is absent."""


# ----------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------
class Registry:
    """Read access to one MLflow tracking server / registry, bound to ``tracking_uri``.

    Never sets MLflow's global tracking or registry URI. Safe to share between threads (one
    instance per process, e.g. in ``st.cache_resource``); the MLflow client is created on first
    use, so constructing a Registry never touches the network or the disk.
    """

    def __init__(self, tracking_uri: str, *, timeout_s: float = 10.0, max_retries: int = 1) -> None:
        if not tracking_uri:
            raise ConfigError("MLFLOW_TRACKING_URI is empty.", "Set it to sqlite:///… or http(s)://….")
        if not timeout_s > 0:
            raise ConfigError(f"The MLflow timeout must be a positive number of seconds, got {timeout_s!r}.")
        if not 0 <= max_retries <= _MAX_RETRIES_LIMIT:
            raise ConfigError(
                f"The MLflow retry count must be between 0 and {_MAX_RETRIES_LIMIT}, got {max_retries!r}.",
                "Check TOWER_MLFLOW_MAX_RETRIES.",
            )
        self.tracking_uri = tracking_uri
        self.display_uri = redact_uri(tracking_uri)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._is_http = urlsplit(tracking_uri).scheme.lower() in ("http", "https")
        self._http_env = http_environment(timeout_s, max_retries)
        self._client_: MlflowClient | None = None
        self._client_lock = threading.Lock()
        if self._is_http:
            apply_environment(self._http_env)

    def __repr__(self) -> str:
        return f"Registry({self.display_uri!r})"

    # -- plumbing ---------------------------------------------------------------------------
    def _check_local_store(self) -> None:
        """Refuse a local store that does not exist: MLflow would silently create an empty one."""
        local = local_store_path(self.tracking_uri)
        if local is None:
            return
        path, is_database = local
        exists = path.is_file() if is_database else path.is_dir()
        if not exists:
            kind = "database file" if is_database else "folder"
            raise RegistryUnavailable(
                f"The MLflow registry {kind} {path} does not exist (tracking URI {self.display_uri}).",
                "Check MLFLOW_TRACKING_URI (for the demo registry, run `make seed`).",
            )

    def _client(self) -> MlflowClient:
        self._check_local_store()  # every call: the file may vanish after the client exists
        if self._is_http:
            apply_environment(self._http_env)
        with self._client_lock:
            if self._client_ is None:
                # registry_uri given explicitly, so MLFLOW_REGISTRY_URI or a global
                # mlflow.set_registry_uri() cannot send us to another registry.
                self._client_ = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            return self._client_

    def _unavailable(self, exc: BaseException) -> RegistryUnavailable:
        detail = describe_failure(exc, self._http_env["MLFLOW_HTTP_REQUEST_TIMEOUT"]).rstrip()
        if not detail.endswith((".", "!", "?")):
            detail += "."
        password = uri_password(self.tracking_uri)
        if password:
            detail = detail.replace(password, "***")
        _log.warning("MLflow registry %s unavailable: %s", self.display_uri, detail)
        code = getattr(exc, "error_code", None)
        if code in _AUTH_CODES:
            return RegistryUnavailable(
                f"The MLflow registry at {self.display_uri} refused the request: {detail}", _AUTH_HINT
            )
        return RegistryUnavailable(f"The MLflow registry at {self.display_uri} cannot be used: {detail}", _HINT)

    def _call(self, fn: Callable[[MlflowClient], T], *, not_found: Callable[[], NotFound] | None = None) -> T:
        """Run one MLflow call and translate its failures into the typed error family."""
        try:
            return fn(self._client())
        except MlflowException as exc:
            # A name MLflow refuses ('/' or ':' in it) names nothing that can exist: not found, not an outage.
            if exc.error_code in {*_NOT_FOUND_CODES, "INVALID_PARAMETER_VALUE"} and not_found is not None:
                raise not_found() from None
            raise self._unavailable(exc) from exc
        except (requests.exceptions.RequestException, sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
            raise self._unavailable(exc) from exc

    def _optional(self, fn: Callable[[MlflowClient], T]) -> T | None:
        """Like _call, but None when the object does not exist."""
        try:
            return self._call(fn, not_found=lambda: _Missing(""))
        except _Missing:
            return None

    @staticmethod
    def _model_not_found(name: str) -> Callable[[], NotFound]:
        return lambda: NotFound(
            f"Model '{name}' is not in the registry.",
            "Check the model name, or MLFLOW_TRACKING_URI if it lives in another registry.",
        )

    def _paged(self, fetch: Callable[[MlflowClient, str | None], Any]) -> list[Any]:
        items: list[Any] = []
        token: str | None = None
        while True:
            # cast: mypy cannot infer a lambda whose default argument binds the loop variable
            page = self._call(cast("Callable[[MlflowClient], Any]", lambda client, token=token: fetch(client, token)))
            items.extend(page)
            token = getattr(page, "token", None)
            if not token:
                return items

    def _registered_model(self, name: str) -> Any:
        return self._call(lambda c: c.get_registered_model(name), not_found=self._model_not_found(name))

    def _versions_of(self, name: str) -> list[Any]:
        filter_string = _name_filter(name)  # None: all versions, filtered below
        versions = self._paged(
            lambda c, token: c.search_model_versions(filter_string, max_results=_VERSIONS_PAGE, page_token=token)
        )
        return [v for v in versions if v.name == name]

    @staticmethod
    def _version_info(mv: Any, aliases: Mapping[str, tuple[str, ...]]) -> VersionInfo:
        version = str(mv.version)
        return VersionInfo(
            model=mv.name,
            version=version,
            run_id=mv.run_id or None,
            model_id=_model_id(mv),
            source=mv.source or "",
            status=str(mv.status or ""),
            stage=mv.current_stage or "None",
            aliases=aliases.get(version, ()),
            description=mv.description or "",
            tags=dict(mv.tags or {}),
            created=_utc(mv.creation_timestamp),
            last_updated=_utc(mv.last_updated_timestamp),
        )

    @staticmethod
    def _summary(rm: Any, versions: list[Any]) -> ModelSummary:
        tags = dict(rm.tags or {})
        numbers = sorted((str(v.version) for v in versions), key=_version_key)
        return ModelSummary(
            name=rm.name,
            description=rm.description or "",
            owner=tags.get("owner") or None,
            tags=tags,
            aliases={str(k): str(v) for k, v in (rm.aliases or {}).items()},
            latest_version=numbers[-1] if numbers else None,
            version_count=len(numbers),
            last_updated=_utc(rm.last_updated_timestamp),
        )

    # -- public API -------------------------------------------------------------------------
    def ping(self) -> None:
        """Return if the registry answers; raise RegistryUnavailable otherwise."""
        self._call(lambda c: c.search_registered_models(max_results=1))

    def list_models(self) -> list[ModelSummary]:
        """Every registered model (prompts excluded by MLflow), sorted by name."""
        models = self._paged(
            lambda c, token: c.search_registered_models(max_results=_MODELS_PAGE, page_token=token)
        )
        # One search over all versions instead of one per model; versions of names that are not
        # in `models` (prompts) are dropped.
        versions = self._paged(
            lambda c, token: c.search_model_versions(max_results=_VERSIONS_PAGE, page_token=token)
        )
        by_model: dict[str, list[Any]] = {}
        for mv in versions:
            by_model.setdefault(mv.name, []).append(mv)
        return sorted((self._summary(rm, by_model.get(rm.name, [])) for rm in models), key=lambda m: m.name)

    def get_model(self, name: str) -> ModelSummary:
        rm = self._registered_model(name)
        return self._summary(rm, self._versions_of(name))

    def list_versions(self, name: str) -> list[VersionInfo]:
        """Versions of ``name``, newest (highest number) first, with their aliases."""
        rm = self._registered_model(name)  # NotFound for an unknown model; also carries the aliases
        aliases = _aliases_by_version(rm.aliases or {})
        infos = [self._version_info(mv, aliases) for mv in self._versions_of(name)]
        return sorted(infos, key=lambda v: _version_key(v.version), reverse=True)

    def stage_holders(
        self, name: str, stage_aliases: dict[str, str], *, legacy: bool = False
    ) -> dict[str, VersionInfo | None]:
        """Stage name -> the version holding it (None if nobody does).

        By alias (``stage_aliases`` maps e.g. "Production" -> "production"), or with
        ``legacy=True`` by MLflow's deprecated ``current_stage``; if several versions sit in one
        legacy stage, the highest number holds it.
        """
        rm = self._registered_model(name)
        aliases = _aliases_by_version(rm.aliases or {})
        if legacy:
            holders: dict[str, VersionInfo | None] = dict.fromkeys(stage_aliases)
            wanted = {stage.lower(): stage for stage in stage_aliases}
            for mv in sorted(self._versions_of(name), key=lambda v: _version_key(str(v.version))):
                stage = wanted.get((mv.current_stage or "").lower())
                if stage is not None:
                    holders[stage] = self._version_info(mv, aliases)  # ascending: the highest wins
            return holders
        current = {str(k): str(v) for k, v in (rm.aliases or {}).items()}
        result: dict[str, VersionInfo | None] = {}
        for stage, alias in stage_aliases.items():
            version = current.get(alias)
            # MLflow drops an alias with its version; None also if that happened since the read above.
            # cast: mypy cannot infer a lambda whose default argument binds the loop variable
            holder = None if version is None else self._optional(
                cast("Callable[[MlflowClient], Any]", lambda c, v=version: c.get_model_version(name, v)))
            result[stage] = None if holder is None else self._version_info(holder, aliases)
        return result

    def _model_version(self, name: str, version: str) -> Any:
        version = str(version).strip()
        if not version.isdigit():
            raise NotFound(f"Version '{version}' of model '{name}' is not in the registry: versions are numbers.")

        def missing() -> NotFound:
            self._registered_model(name)  # raises "Model 'x' is not in the registry." if so
            return NotFound(
                f"Version '{version}' of model '{name}' is not in the registry.",
                "It may have been deleted; reload the page.",
            )

        return self._call(lambda c: c.get_model_version(name, version), not_found=missing)

    def lineage(self, name: str, version: str) -> Lineage:
        """Version -> model_id -> run -> params, metrics, datasets, tags, git commit, parent run.

        A run that is gone (deleted, or logged on another server) leaves the run fields empty
        rather than failing: the version itself exists.
        """
        rm = self._registered_model(name)
        mv = self._model_version(name, version)
        model_id = _model_id(mv)
        run_id = mv.run_id or None
        if run_id is None and model_id is not None:
            logged = self._optional(lambda c: c.get_logged_model(model_id))
            run_id = getattr(logged, "source_run_id", None) or None
        aliases = _aliases_by_version(rm.aliases or {}).get(str(mv.version), ())
        run = None if run_id is None else self._optional(lambda c: c.get_run(run_id))
        if run is None:
            return Lineage(
                model=name, version=str(mv.version), model_id=model_id, run_id=run_id, run_name=None,
                experiment_id=None, run_status=None, params={}, metrics={}, tags={}, datasets=(),
                git_commit=None, parent_run_id=None, aliases=aliases,
            )
        all_tags = dict(run.data.tags or {})
        datasets = []
        for dataset_input in getattr(run.inputs, "dataset_inputs", None) or []:
            ds = dataset_input.dataset
            datasets.append(DatasetRef(
                name=ds.name or "", digest=ds.digest or "", source=_dataset_source(ds.source),
                source_type=ds.source_type or "", context=_context(dataset_input),
            ))
        return Lineage(
            model=name,
            version=str(mv.version),
            model_id=model_id,
            run_id=run.info.run_id,
            run_name=run.info.run_name or None,
            experiment_id=run.info.experiment_id,
            run_status=run.info.status,
            params={str(k): str(v) for k, v in (run.data.params or {}).items()},
            metrics={str(k): float(v) for k, v in (run.data.metrics or {}).items()},
            tags={k: v for k, v in all_tags.items() if not k.startswith("mlflow.")},
            datasets=tuple(datasets),
            git_commit=all_tags.get("mlflow.source.git.commit") or None,
            parent_run_id=all_tags.get("mlflow.parentRunId") or None,
            aliases=aliases,
        )

    def input_datasets(self, name: str, version: str, context: str | None = "training") -> tuple[InputDataset, ...]:
        """The input datasets the version's run logged with ``context`` (None: every context), in logged order.

        () when the version has no run (or it is gone) or the run logged none; NotFound for an unknown
        model or version; RegistryUnavailable when the registry cannot be read.
        """
        mv = self._model_version(name, version)
        run_id = mv.run_id or None
        model_id = _model_id(mv)
        if run_id is None and model_id is not None:
            logged = self._optional(lambda c: c.get_logged_model(model_id))
            run_id = getattr(logged, "source_run_id", None) or None
        run = None if run_id is None else self._optional(lambda c: c.get_run(run_id))
        if run is None:
            return ()
        found = []
        for dataset_input in getattr(run.inputs, "dataset_inputs", None) or []:
            ds = dataset_input.dataset
            if context is not None and _context(dataset_input) != context:
                continue
            found.append(InputDataset(
                name=ds.name or "", digest=ds.digest or "", source_type=ds.source_type or "", source=ds.source or "",
                context=_context(dataset_input), num_rows=_num_rows(_json_object(ds.profile)),
                columns=_schema_columns(_json_object(ds.schema))))
        return tuple(found)

    # -- governance: reads the projection needs, and the only writes -------------------------
    def _version_missing(self, name: str, version: str) -> Callable[[], NotFound]:
        def missing() -> NotFound:
            self._registered_model(name)  # raises "Model 'x' is not in the registry." if so
            return NotFound(f"Version '{version}' of model '{name}' is not in the registry.",
                            "It may have been deleted; reload the page.")
        return missing

    def _checked_version(self, version: str | int, name: str) -> str:
        # Refused, never repaired: "03" must not reach MLflow as a second spelling of version 3.
        from services.versions import canonical_version

        return canonical_version(version)

    def model_tags(self, name: str) -> dict[str, str]:
        """The registered model's tags (``owner`` among them)."""
        return dict(self._registered_model(name).tags or {})

    def model_aliases(self, name: str) -> dict[str, str]:
        """Alias -> version of the registered model (one call; no version search)."""
        return {str(k): str(v) for k, v in (self._registered_model(name).aliases or {}).items()}

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        return dict(self._model_version(name, version).tags or {})

    def version_stage(self, name: str, version: str) -> str:
        """The legacy (deprecated) stage of a version, 'None' if it has none."""
        return self._model_version(name, version).current_stage or "None"

    def version_creator(self, name: str, version: str) -> str | None:
        """Who created the version: MLflow's version user, else the user of its run (None if unknown)."""
        mv = self._model_version(name, version)
        if getattr(mv, "user_id", None):
            return str(mv.user_id)
        run_id = mv.run_id or None
        if run_id is None:
            model_id = _model_id(mv)
            logged = None if model_id is None else self._optional(lambda c: c.get_logged_model(model_id))
            run_id = getattr(logged, "source_run_id", None) or None
        run = None if run_id is None else self._optional(lambda c: c.get_run(run_id))
        if run is None:
            return None
        user = (run.data.tags or {}).get("mlflow.user") or run.info.user_id
        return None if not user or user == "unknown" else str(user)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        version = self._checked_version(version, name)
        self._call(lambda c: c.set_registered_model_alias(name, alias, version),
                   not_found=self._version_missing(name, version))

    def delete_alias(self, name: str, alias: str) -> None:
        self._call(lambda c: c.delete_registered_model_alias(name, alias), not_found=self._model_not_found(name))

    def transition_stage(self, name: str, version: str, stage: str, *, archive_existing_versions: bool = True) -> None:
        """Legacy stage transition (deprecated by MLflow 2.9, still used by some registries)."""
        version = self._checked_version(version, name)

        def transition(c: MlflowClient) -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                return c.transition_model_version_stage(name, version, stage,
                                                        archive_existing_versions=archive_existing_versions)

        self._call(transition, not_found=self._version_missing(name, version))

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        version = self._checked_version(version, name)
        self._call(lambda c: c.set_model_version_tag(name, version, key, value),
                   not_found=self._version_missing(name, version))

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self._call(lambda c: c.set_registered_model_tag(name, key, value), not_found=self._model_not_found(name))

    # -- webhooks (services.webhooks registers the tower's receiver) ------------------------------
    def upsert_webhook(self, name: str, url: str, events: list[str], secret: str, description: str) -> tuple[str, bool]:
        """Create the webhook ``name``, or update it in place (URL, events, secret, active); (its id, created)."""
        from mlflow.entities.webhook import WebhookEvent

        wanted: list[Any] = [WebhookEvent.from_str(cast(Any, e)) for e in events]
        hooks = self._paged(lambda c, token: c.list_webhooks(max_results=100, page_token=token))
        same = sorted((h for h in hooks if h.name == name), key=lambda h: h.webhook_id)
        if same:
            hook_id = same[0].webhook_id
            self._call(lambda c: c.update_webhook(hook_id, url=url, events=wanted, secret=secret, status="ACTIVE",
                                                  description=description))
            return hook_id, False
        hook = self._call(lambda c: c.create_webhook(name=name, url=url, events=wanted, secret=secret,
                                                     description=description))
        return str(hook.webhook_id), True
