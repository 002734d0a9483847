"""Two window reports' JSON compared as one report computed two ways (another warehouse, a segment
against a pre-filtered table): numbers to 1e-9, bootstrap bounds within Monte-Carlo error."""

from __future__ import annotations

import math
from typing import Any

# Bootstrap bounds are seeded by the reference id (a digest naming the tables) and the segment, which differ
# between the two computations: equal within Monte-Carlo error (200 replicates), not bit for bit.
BOOTSTRAPPED = ("lower", "upper", "noise")


def assert_same(ours: Any, oracle: Any, path: str = "", *, ordered_keys: bool = False) -> None:
    """Equal JSON, numbers to 1e-9 (sums may be added up in another order); ``ordered_keys`` also
    compares the order of each object's keys."""
    if path.endswith(".too_small"):  # the noise level against the threshold: a Monte-Carlo figure too
        assert isinstance(ours, bool) == isinstance(oracle, bool), path
        return
    if isinstance(oracle, dict):
        assert isinstance(ours, dict), path
        assert (list(ours) == list(oracle)) if ordered_keys else (sorted(ours) == sorted(oracle)), path
        for key in oracle:
            assert_same(ours[key], oracle[key], f"{path}.{key}", ordered_keys=ordered_keys)
    elif isinstance(oracle, list):
        assert isinstance(ours, list) and len(ours) == len(oracle), path
        for i, (a, b) in enumerate(zip(ours, oracle, strict=True)):
            assert_same(a, b, f"{path}[{i}]", ordered_keys=ordered_keys)
    elif isinstance(oracle, float) and not isinstance(oracle, bool):
        loose = path.rsplit(".", 1)[-1] in BOOTSTRAPPED
        # Two independent 200-draw estimates of a tail percentile: the 95th percentile of 200 draws is
        # itself anywhere between about the 92nd and the 98th (one standard error each way), which on a
        # small segment's window moved the noise level by 20-25 % (0.096 against 0.121 in a CI run).
        rel, absolute = (0.3, 2e-3) if loose else (1e-9, 1e-12)
        assert isinstance(ours, (int, float)) and math.isclose(ours, oracle, rel_tol=rel, abs_tol=absolute), \
            f"{path}: {ours} != {oracle}"
    else:
        assert ours == oracle, f"{path}: {ours!r} != {oracle!r}"
