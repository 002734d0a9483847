"""The reference of a model as the registry knows it: the training dataset of the version in production.

``models.<name>.reference.from_registry: training`` says "compare the live data with what the serving
model was trained on". :func:`reference_for` is the one place that turns it into a reference: it finds
the version holding the Production stage (or the version asked for), reads the input datasets its run
logged with context training, resolves the dataset's source to an allowed warehouse table and snapshot
(``services.monitoring.reference_sources``), checks the warehouse holds it, and verifies it against what
MLflow recorded (row count, columns, and the digest when the rows' logged order is known). The result is
a copy of the mapping whose reference reads exactly those rows and whose definition carries the registry
link, so each (model, version, dataset digest) gets its own kept profile, and promoting a new version
switches the reference at the next resolution. When anything is missing the configured table or log
period is used instead, and :attr:`ResolvedReference.fallback` says which version, what was found and
what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy.engine import Engine

from services.errors import NotFound, RegistryUnavailable
from services.mapping import ModelMapping
from services.monitoring.reference_sources import (
    SECTION,
    ResolvedSource,
    SourceNotResolved,
    SourceRule,
    parse_reference_sources,
    printable,
    resolve_source,
    shown,
    source_uri,
)
from services.settings import Settings
from services.stores.registry import Registry
from services.stores.registry_digest import DIGEST_ROWS, DigestNotComputable, pandas_digest
from services.stores.registry_records import InputDataset
from services.stores.warehouse.reference_tables import TableFacts, ordered_head, table_facts

PRODUCTION = "Production"
VERIFIED, MATCHES, MISMATCH = "verified", "row count and columns match", "mismatch"


@dataclass(frozen=True)
class Verification:
    """How far the warehouse rows were shown to be the logged dataset."""

    status: str  # VERIFIED, MATCHES (digest not computable) or MISMATCH
    detail: str  # why the digest could not be computed, or what differs

    @property
    def text(self) -> str:
        if self.status == VERIFIED:
            return "verified (digest, row count and columns match what MLflow logged)"
        if self.status == MATCHES:
            return f"row count and columns match; digest not computable ({self.detail})"
        return f"MISMATCH: {self.detail}"


@dataclass(frozen=True)
class RegistryReference:
    """Which logged dataset a reference is, and where the warehouse holds it."""

    model: str
    version: str
    dataset: str
    digest: str
    source: str  # the source's uri, as a message may quote it
    table: str
    snapshot: str | None
    rows: int
    verification: Verification

    @property
    def text(self) -> str:
        where = self.table + (f", snapshot {self.snapshot}" if self.snapshot else "")
        return (f"the training dataset {self.dataset} (digest {self.digest}) of version {self.version}, "
                f"source {self.source}, read from {where}: {self.verification.text}")


@dataclass(frozen=True)
class ResolvedReference:
    """The mapping whose reference the profiles read, and which reference that is (or why it fell back)."""

    mapping: ModelMapping
    source: RegistryReference | None = None
    fallback: str | None = None  # why the configured reference is used although from_registry is set

    @property
    def text(self) -> str | None:
        """Which dataset the reference is, or why it fell back (None: not a registry reference)."""
        return self.fallback or (None if self.source is None else self.source.text)

    @property
    def mismatch(self) -> bool:
        return self.source is not None and self.source.verification.status == MISMATCH


def fallback_reference(mapping: ModelMapping, why: str) -> ResolvedReference:
    ref = mapping.reference
    configured = (f"the reference table {ref.table}" if ref.table else
                  f"the configured log period {ref.start} – {ref.end}" if ref.start and ref.end else
                  "no configured reference (set models.<name>.reference.table or start/end)")
    return ResolvedReference(mapping, None, f"{why} Using {configured} instead.")


def _verify(warehouse: Engine, dataset: InputDataset, found: ResolvedSource, facts: TableFacts) -> Verification:
    present = {c.lower() for c in facts.columns}
    missing = [name for name, _ in dataset.columns if name.lower() not in present]
    differences = []
    if missing:
        differences.append(f"the table lacks the logged column(s) {', '.join(missing)}")
    if dataset.num_rows is not None and dataset.num_rows != facts.rows:
        differences.append(f"MLflow logged {dataset.num_rows:,} rows, the warehouse holds {facts.rows:,}")
    if differences:
        return Verification(MISMATCH, "; ".join(differences))
    if dataset.num_rows is None or not dataset.columns:
        return Verification(MATCHES, "the run logged no row count or column schema to compare with")
    if found.order_column is None:
        return Verification(MATCHES, "the reference_sources rule names no order_column, and MLflow's digest "
                                     "depends on row order")
    if found.order_column.lower() not in present:
        return Verification(MATCHES, f"the table has no order column {found.order_column}")
    snapshot = (found.snapshot_column, found.snapshot or "") if found.snapshot_column else None
    head = ordered_head(warehouse, found.table, [name for name, _ in dataset.columns], snapshot,
                        found.order_column, DIGEST_ROWS)
    try:
        digest = pandas_digest(head, dataset.columns, facts.rows)
    except DigestNotComputable as exc:
        return Verification(MATCHES, str(exc))
    if digest != dataset.digest:
        return Verification(MISMATCH, f"MLflow logged digest {dataset.digest}, the warehouse rows give {digest} "
                                      "(same row count and columns, different values or order)")
    return Verification(VERIFIED, "")


def resolve_reference(registry: Registry, warehouse: Engine, mapping: ModelMapping, rules: tuple[SourceRule, ...],
                      *, production_alias: str = "production", legacy: bool = False,
                      version: str | None = None) -> ResolvedReference:
    """``mapping`` with its reference resolved from the registry (``version``, else the Production holder).

    A mapping without ``reference.from_registry`` comes back unchanged. RegistryUnavailable and a
    missing dataset, source, table or snapshot give the configured reference with the reason.
    """
    if mapping.reference.from_registry is None:
        return ResolvedReference(mapping)
    name = mapping.name

    def fell(why: str) -> ResolvedReference:
        return fallback_reference(mapping, why)

    try:
        if version is None:
            holder = registry.stage_holders(name, {PRODUCTION: production_alias}, legacy=legacy)[PRODUCTION]
            if holder is None:
                return fell(f"No version of {name} holds the {PRODUCTION} stage, so there is no "
                            "production training dataset to compare with.")
            version = holder.version
        datasets = registry.input_datasets(name, version, context=mapping.reference.from_registry)
    except (RegistryUnavailable, NotFound) as exc:
        return fell(f"The training dataset of {name} cannot be read from the registry: "
                    f"{exc.message}")
    if not datasets:
        return fell(f"Version {version} of {name}: its run logged no input dataset with context "
                    f"{mapping.reference.from_registry!r}. Log one with mlflow.log_input(dataset, "
                    f"context=\"{mapping.reference.from_registry}\") when training.")
    dataset = datasets[0]  # the first one logged; a run normally logs one training set
    try:
        found = resolve_source(rules, dataset.source)
    except SourceNotResolved as exc:
        return fell(f"Version {version} of {name}: dataset {shown(dataset.name)}: {exc}")
    snapshot = (found.snapshot_column, found.snapshot or "") if found.snapshot_column else None
    facts = table_facts(warehouse, found.table, snapshot)
    where = found.table + (f" (snapshot {found.snapshot})" if found.snapshot else "")
    if not facts.exists:
        return fell(f"Version {version} of {name}: its training dataset resolves to {where}, "
                    "which the warehouse does not have. Load the training data there.")
    present = {c.lower() for c in facts.columns}
    if found.snapshot_column is not None and found.snapshot_column.lower() not in present:
        return fell(f"Version {version} of {name}: {found.table} has no snapshot column {found.snapshot_column}.")
    if facts.rows == 0:
        return fell(f"Version {version} of {name}: its training dataset resolves to {where}, "
                    "which holds no rows. Load the training snapshot there.")
    lacking = [c for c in mapping.features if c.lower() not in present]
    if lacking:
        return fell(f"Version {version} of {name}: {found.table} lacks the monitored feature(s) "
                    f"{', '.join(lacking)}.")
    verification = _verify(warehouse, dataset, found, facts)
    uri = printable(source_uri(dataset.source))  # matched a rule: plain ASCII already
    dataset_name, digest = printable(dataset.name, 200), printable(dataset.digest, 64)  # logged by anyone
    link = (("version", str(version)), ("dataset", dataset_name), ("digest", digest), ("source", uri))
    resolved = replace(mapping, reference=replace(
        mapping.reference, table=found.table, start=None, end=None, snapshot_column=found.snapshot_column,
        snapshot=found.snapshot, registry=link))
    source = RegistryReference(name, str(version), dataset_name, digest, uri, found.table, found.snapshot,
                               facts.rows, verification)
    return ResolvedReference(resolved, source)


def production_version(settings: Settings, registry: Registry, name: str) -> str | None:
    """The version holding the Production stage now (one registry call with aliases), None if nobody does."""
    alias = settings.stage_aliases.get(PRODUCTION, "production")
    if settings.use_legacy_stages:
        holder = registry.stage_holders(name, {PRODUCTION: alias}, legacy=True)[PRODUCTION]
        return None if holder is None else holder.version
    return registry.model_aliases(name).get(alias)


def reference_for(settings: Settings, registry: Registry, warehouse: Engine, mapping: ModelMapping,
                  version: str | None = None) -> ResolvedReference:
    """The reference every caller uses (pages, the job, reports): ``resolve_reference`` with the settings'
    rules, Production alias and stage mode."""
    rules = settings.parsed(SECTION, parse_reference_sources)
    return resolve_reference(registry, warehouse, mapping, rules,
                             production_alias=settings.stage_aliases.get(PRODUCTION, "production"),
                             legacy=settings.use_legacy_stages, version=version)
