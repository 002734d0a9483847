"""bench.protocol_load end to end, tiny: two sessions signed in through the OIDC provider, one page each.

Checks that the generator speaks the protocol (every session signed in, its page drawn with its title
and timed) and that every figure of the report is there; no timing is asserted (this machine's load
decides those; the real figures are in bench/RESULTS.md).
"""

from __future__ import annotations

import pytest

from bench.protocol_load.cli import parse_args
from bench.protocol_load.report import markdown
from bench.protocol_load.run import run_protocol_load
from bench.protocol_load.walk import PAGES

pytestmark = pytest.mark.slow


def test_two_protocol_sessions_sign_in_and_load_a_page_and_every_figure_is_reported(demo_template):
    args = parse_args(["--sessions", "2", "--pages", "1", "--demo", str(demo_template), "--no-warmup",
                       "--timeout", "60"])
    report = run_protocol_load(args, log=lambda _msg: None)

    (level,) = report["levels"]
    assert (level["sessions"], level["ok"], level["failures"]) == (2, 2, []), level["failures"]
    fleet = level["pages"][PAGES[0].name]
    for key in ("first_delta", "finished"):
        assert fleet[key]["n"] == 2 and 0 < fleet[key]["p50"] <= fleet[key]["max"], (key, fleet[key])
    assert level["pages"]["overall"]["finished"]["n"] == 2 and level["page_runs_ok"] == 2
    assert level["signin"]["n"] == 2 and level["signin"]["p50"] > 0
    assert level["bytes"]["p50"] > 1000  # the fleet page's table travelled
    assert level["cpu"]["core_s"]["app1"] > 0 and "generator" in level["cpu"]["core_s"]
    assert level["rss_before_mb"]["app1"] > 0 and level["rss_after_mb"]["app1"] > 0
    assert level["server_runs"]["app1"]["cpu"]["n"] >= 2  # the server's own record of the two runs

    text = markdown(report)
    for needle in ("| 2 | 2 / 2 |", "What this measures", "What two cores allow", "Targets"):
        assert needle in text, needle
