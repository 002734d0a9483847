"""Which warehouse table a logged dataset's source names (tower.yaml ``reference_sources``): pure, no I/O.

A run's input dataset records where its data came from as a free string (MLflow stores a JSON
description; we take its ``uri``, or the raw string). That string is written by whoever may log runs
(a registry editor, a CI bot), so it is hostile input here: a rule turns it into a table only when it
matches the rule's template exactly (ASCII letters, digits and a few separators per placeholder, case
and whitespace as written), the table it names is a valid identifier *and* one of the rule's
``tables`` (so a run cannot point the reference at an arbitrary table, e.g. the live log, to hide
drift), and the snapshot reaches SQL only as a bound parameter. Anything else is
:class:`SourceNotResolved`, which the caller turns into the configured fallback with its message.

```yaml
reference_sources:
  - match: "warehouse://{table}@{snapshot}"   # placeholders: {table}, {snapshot}
    table: "{table}"                           # the warehouse table (may add a prefix: "features.{table}")
    tables: [features.credit_risk_training]    # the only tables a source may name (required)
    snapshot_column: snapshot                  # rows where snapshot = {snapshot} (required with {snapshot})
    order_column: row_index                    # optional: the logged row order, to recompute MLflow's digest
```
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.errors import ConfigError, TowerError
from services.mapping import valid_identifier

SECTION = "reference_sources"  # tower.yaml's top-level key
MAX_SOURCE_CHARS = 4096  # a real source URI is short; anything longer is refused before it is parsed
_SHOWN_CHARS = 120  # of a source quoted in a message
# What each placeholder may capture: ASCII only (no look-alikes, no full-width digits), no quotes,
# spaces, semicolons or control characters. The table is checked again as an identifier.
_PLACEHOLDERS = {
    "table": r"[A-Za-z_][A-Za-z0-9_]{0,127}(?:\.[A-Za-z_][A-Za-z0-9_]{0,127})?",
    "snapshot": r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}",
}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_KEYS = {"match", "table", "tables", "snapshot_column", "order_column"}


class SourceNotResolved(TowerError):
    """A dataset source no rule turns into an allowed table (the message says why, the caller falls back)."""


@dataclass(frozen=True)
class SourceRule:
    """One ``reference_sources`` entry, checked at load time."""

    match: str
    table: str
    tables: frozenset[str]
    snapshot_column: str | None
    order_column: str | None
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class ResolvedSource:
    """The warehouse rows a dataset source names: a table, optionally one snapshot of it."""

    table: str
    snapshot_column: str | None
    snapshot: str | None
    order_column: str | None


def _template(text: str, where: str) -> re.Pattern[str]:
    """The template's regex: literal text escaped, each placeholder its own strict class."""
    parts, last = [], 0
    for found in _PLACEHOLDER.finditer(text):
        name = found.group(1)
        if name not in _PLACEHOLDERS:
            raise ConfigError(f"{where}: unknown placeholder {{{name}}}; use {{table}} and {{snapshot}}.")
        parts += [re.escape(text[last:found.start()]), f"(?P<{name}>{_PLACEHOLDERS[name]})"]
        last = found.end()
    parts.append(re.escape(text[last:]))
    try:
        return re.compile("".join(parts), re.ASCII)
    except re.error as exc:  # a placeholder twice
        raise ConfigError(f"{where}: {exc}.", "Name each placeholder once.") from exc


def _optional_identifier(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not valid_identifier(value):
        raise ConfigError(f"{where}: {value!r} is not a valid column name.", "Use letters, digits and underscores.")
    return str(value)


def _rule(raw: Any, where: str) -> SourceRule:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with match, table and tables.")
    unknown = set(map(str, raw)) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known keys are "
                          f"{', '.join(sorted(_KEYS))}.")
    match, table = raw.get("match"), raw.get("table", "{table}")
    if not isinstance(match, str) or not match.strip():
        raise ConfigError(f"{where}.match must be a template such as \"warehouse://{{table}}@{{snapshot}}\".")
    if not isinstance(table, str) or not table:
        raise ConfigError(f"{where}.table must be a template such as \"{{table}}\".")
    pattern = _template(match, f"{where}.match")
    used = set(pattern.groupindex)
    if not set(_PLACEHOLDER.findall(table)) <= used:
        raise ConfigError(f"{where}.table uses a placeholder that {where}.match does not capture.")
    tables = raw.get("tables")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{where}.tables must list the tables a dataset source may name.",
                          "Without it a run could point its reference at any table (the live log, to hide drift).")
    for name in tables:
        if not valid_identifier(name):
            raise ConfigError(f"{where}.tables: {name!r} is not a valid table name.")
    snapshot_column = _optional_identifier(raw.get("snapshot_column"), f"{where}.snapshot_column")
    if "snapshot" in used and snapshot_column is None:
        raise ConfigError(f"{where} captures {{snapshot}} but names no snapshot_column to filter on.")
    return SourceRule(match, table, frozenset(tables), snapshot_column,
                      _optional_identifier(raw.get("order_column"), f"{where}.order_column"), pattern)


def parse_reference_sources(raw: Any) -> tuple[SourceRule, ...]:
    """tower.yaml's ``reference_sources`` section (None: no rule); ConfigError naming the bad entry."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("reference_sources must be a list of rules (match, table, tables, snapshot_column).")
    return tuple(_rule(item, f"reference_sources[{i}]") for i, item in enumerate(raw))


def printable(text: str, limit: int = _SHOWN_CHARS) -> str:
    """Registry text as a page or a terminal may show it: control and other invisible characters
    replaced (no ANSI escape reaches a terminal), cut to ``limit`` characters."""
    clean = "".join(c if unicodedata.category(c)[0] not in "CZ" or c == " " else "�" for c in text[:limit + 1])
    return clean if len(clean) <= limit else clean[:limit] + "…"


def shown(text: str) -> str:
    """A hostile string as a message may quote it: printable, cut short, quoted."""
    return repr(printable(text))


def source_uri(raw: str) -> str:
    """The location in MLflow's JSON description of a source (its ``uri``), or the raw string."""
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        return raw
    if isinstance(parsed, dict):
        uri = parsed.get("uri")
        return uri if isinstance(uri, str) else raw
    return raw


def resolve_source(rules: Sequence[SourceRule], raw: str) -> ResolvedSource:
    """The allowed table (and snapshot) ``raw`` names; SourceNotResolved saying why not."""
    if len(raw) > MAX_SOURCE_CHARS:
        raise SourceNotResolved(f"The dataset source is too long ({len(raw):,} characters) to be a table location.")
    if not rules:
        raise SourceNotResolved("There is no reference_sources rule in tower.yaml, so no dataset source resolves.",
                                "Add one (README, Configuration: reference_sources).")
    uri = source_uri(raw)
    for rule in rules:
        found = rule.pattern.fullmatch(uri)
        if found is None:
            continue
        values = found.groupdict()
        table = rule.table.format(**values)
        if not valid_identifier(table) or table not in rule.tables:
            raise SourceNotResolved(
                f"The dataset source {shown(uri)} names the table {shown(table)}, which is not among the tables "
                f"the rule {rule.match!r} allows ({', '.join(sorted(rule.tables))}).",
                "Add the table to the rule's `tables` in tower.yaml if it really holds this model's training data.")
        return ResolvedSource(table, rule.snapshot_column, values.get("snapshot"), rule.order_column)
    raise SourceNotResolved(f"The tower cannot resolve the dataset source {shown(uri)}: it matches none of "
                            f"the reference_sources rules ({', '.join(repr(r.match) for r in rules)}).",
                            "Log the dataset with a source a rule matches, or add a rule to tower.yaml.")
