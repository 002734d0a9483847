"""Alert rules that name segments: ``segments: [name, ...]`` on a rule of ``monitoring.alerts`` (or of a
model's override), and what an episode of a segment is called.

```yaml
monitoring:
  models:
    loan-approval:
      performance: {segments: [business]}   # the whole population, and the business segment too
```

A rule without ``segments`` judges the whole population only (the stored rows with ``segment = ''``).
With it, the rule also judges each named segment's stored series (``monitoring_results.segment =
name``: the job computes every declared segment against the segment's own reference), with the same
settings. A name the model does not declare is refused when tower.yaml is loaded, naming the model's
segments: a typo must not leave a segment silently unwatched.

An episode's identity (``alert_episodes``: model, rule, subject, opening window) must tell a segment's
episode from the whole population's, so a segment's subject is ``segment:<name>`` for a model-level
series and ``segment:<name>/<subject>`` otherwise (``segment:business/roc_auc``,
``segment:north/income``). Segment names never hold ``/`` or ``:`` (``services.segments``), and
feature and attribute names never start with ``segment:``, so the subject splits back unambiguously.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.errors import ConfigError
from services.segments import OVERALL

PREFIX = "segment:"
KEY = "segments"  # the key a rule names its segments with
MAX_SEGMENTS = 100


def segment_subject(segment: str, subject: str) -> str:
    """The episode subject of ``subject`` (a feature, an attribute, a metric or '') in ``segment``."""
    if segment == OVERALL:
        return subject
    return f"{PREFIX}{segment}" + (f"/{subject}" if subject else "")


def split_subject(subject: str) -> tuple[str, str]:
    """(segment, subject) of an episode subject; the segment is '' for the whole population."""
    if not subject.startswith(PREFIX):
        return OVERALL, subject
    segment, _, rest = subject[len(PREFIX):].partition("/")
    return segment, rest


def parse_rule_segments(raw: Any, where: str) -> tuple[str, ...]:
    """A rule's ``segments``: a list of names (checked against each model later, in `check_rule_segments`)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_SEGMENTS:
        raise ConfigError(f"{where} must be a list of segment names (at most {MAX_SEGMENTS}).")
    names = []
    for item in raw:
        if not isinstance(item, str) or not item:
            shown = repr(item) if len(repr(item)) <= 60 else repr(item)[:60] + "…"
            raise ConfigError(f"{where}: {shown} is not a segment name.")
        names.append(item)
    return tuple(dict.fromkeys(names))


def check_rule_segments(segments: tuple[tuple[str, tuple[str, ...]], ...], model: str, declared: tuple[str, ...],
                        where: str) -> None:
    """Refuse a rule naming a segment ``model`` does not declare (``declared``: its segment names)."""
    for rule, names in segments:
        for name in names:
            if name in declared:
                continue
            shown = name if len(name) <= 64 else name[:64] + "…"
            near = [d for d in declared if d.casefold() == name.strip().casefold()]
            hint = f"Did you mean {near[0]!r}? " if near else ""
            known = ", ".join(declared) or f"none (declare them under models.{model}.segments)"
            raise ConfigError(f"{where}.{rule}.segments names {shown!r}, which is not a segment of model '{model}'.",
                              f"{hint}Its segments: {known}.")


def rule_segments(raw_rules: Mapping[str, Any], base: tuple[tuple[str, tuple[str, ...]], ...], where: str
                  ) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``base`` (rule -> segments) with the ``segments`` each rule of ``raw_rules`` sets (an override
    replaces the inherited list; ``segments: []`` clears it)."""
    merged = dict(base)
    for rule, settings in raw_rules.items():
        if isinstance(settings, Mapping) and KEY in settings:
            merged[str(rule)] = parse_rule_segments(settings[KEY], f"{where}.{rule}.{KEY}")
    return tuple(sorted((rule, names) for rule, names in merged.items() if names))


def without_segments(raw: Any) -> Any:
    """A rule's settings without ``segments`` (the rule dataclasses do not hold it)."""
    if isinstance(raw, Mapping) and KEY in raw:
        return {k: v for k, v in raw.items() if k != KEY}
    return raw
