"""One session's measurements, and the percentile summaries every figure of the report is made of."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SessionResult:
    index: int
    user: str
    signin_s: float | None = None
    # {page, walk, render_s, complete_s, start_s, script_s, rerun_s, rerun_script_s}
    pages: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


MEASURES = ("render", "complete", "start", "script", "rerun", "rerun_script")


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
            "max": max(values) if values else None}


def session_dict(r: SessionResult) -> dict[str, Any]:
    return {"index": r.index, "user": r.user, "ok": r.ok, "error": r.error, "signin_s": r.signin_s, "pages": r.pages}
