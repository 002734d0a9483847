"""The report as Markdown (a section of bench/RESULTS.md) and as console text."""

from __future__ import annotations

from typing import Any

from bench.protocol_load.run import TARGETS


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _server_cpu(level: dict[str, Any]) -> float:
    return sum(v for k, v in level["cpu"]["core_s"].items() if k.startswith("app"))


def _runs(level: dict[str, Any]) -> tuple[int, float]:
    """Full script runs the servers recorded in the walk, and their script threads' CPU seconds."""
    runs = level["server_runs"].values()
    return sum(r["cpu"]["n"] for r in runs), sum(r["total_cpu_s"] for r in runs)


def levels_table(report: dict[str, Any]) -> str:
    lines = ["| sessions | ok | first delta p50 / p95 (s) | script finished p50 / p95 (s) | walk (s) | pages/s "
             "| server CPU (core-s) | per page run (CPU-s) | RSS before → after (MB) | growth (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for lv in report["levels"]:
        o = lv["pages"]["overall"]
        runs, _cpu = _runs(lv)
        per_run = _server_cpu(lv) / runs if runs else None
        lines.append(
            f"| {lv['sessions']} | {lv['ok']} / {lv['sessions']} | {_s(o['first_delta']['p50'])} / "
            f"{_s(o['first_delta']['p95'])} | {_s(o['finished']['p50'])} / {_s(o['finished']['p95'])} | "
            f"{lv['walk_s']:.1f} | {lv['throughput_pages_s']:.1f} | {_server_cpu(lv):.1f} | {_s(per_run)} | "
            f"{sum(lv['rss_before_mb'].values()):.0f} → {sum(lv['rss_after_mb'].values()):.0f} | "
            f"{lv['growth_mb']:+.0f} |")
    return "\n".join(lines)


def pages_table(level: dict[str, Any]) -> str:
    lines = ["| page | first delta p50 / p95 (s) | title p50 / p95 (s) | script finished p50 / p95 (s) | samples |",
             "|---|---|---|---|---|"]
    for name, st in level["pages"].items():
        label = f"**{name}**" if name == "overall" else name
        title = st.get("title") or {"p50": None, "p95": None}  # reports before the title was timed have none
        lines.append(f"| {label} | {_s(st['first_delta']['p50'])} / {_s(st['first_delta']['p95'])} | "
                     f"{_s(title['p50'])} / {_s(title['p95'])} | "
                     f"{_s(st['finished']['p50'])} / {_s(st['finished']['p95'])} | {st['finished']['n']} |")
    return "\n".join(lines)


def cpu_lines(level: dict[str, Any]) -> list[str]:
    cpu = level["cpu"]
    secs = max(cpu["seconds"], 1e-9)
    parts = ", ".join(f"{name} {value / secs:.2f}" for name, value in cpu["core_s"].items())
    return [f"- {level['sessions']} sessions: machine {cpu['machine_busy_core_s'] / secs:.2f} of "
            f"{cpu['machine_core_s'] / secs:.0f} cores busy over {secs:.1f} s; by process (cores): {parts}"]


def targets(report: dict[str, Any]) -> list[str]:
    level = next((lv for lv in report["levels"] if lv["sessions"] == TARGETS["sessions"]), None)
    if level is None:
        return [f"- no level of {TARGETS['sessions']} sessions was run"]
    o = level["pages"]["overall"]
    checks = [
        ("100 % of sessions succeed", f"{level['success_rate']:.0%}", level["success_rate"] >= TARGETS["success_rate"]),
        ("p95 first delta < 2 s", f"{_s(o['first_delta']['p95'])} s",
         o["first_delta"]["p95"] is not None and o["first_delta"]["p95"] < TARGETS["p95_first_delta_s"]),
        ("p95 script finished < 5 s", f"{_s(o['finished']['p95'])} s",
         o["finished"]["p95"] is not None and o["finished"]["p95"] < TARGETS["p95_finished_s"]),
        ("memory growth < 100 MB", f"{level['growth_mb']:+.0f} MB", level["growth_mb"] < TARGETS["growth_mb"]),
    ]
    return [f"- [{'x' if met else ' '}] {what}: {value}" for what, value, met in checks]


def bound(report: dict[str, Any]) -> list[str]:
    """What two cores allow: the servers' CPU per page run × the runs ÷ the cores."""
    out = []
    cores = report["machine"]["cores"] or 1
    for lv in report["levels"]:
        runs, _ = _runs(lv)
        if not runs:
            continue
        per_run = _server_cpu(lv) / runs
        out.append(f"- {lv['sessions']} sessions × {len(report['config']['pages'])} pages = {runs} runs × "
                   f"{per_run:.3f} CPU-s ÷ {cores} cores ≥ {runs * per_run / cores:.1f} s for the last page to "
                   f"finish if nothing else ran (one replica is one Python process: script runs share its GIL, "
                   f"so one replica alone can use about one core); measured walk {lv['walk_s']:.1f} s")
    return out


def markdown(report: dict[str, Any], title: str | None = None) -> str:
    cfg, m = report["config"], report["machine"]
    where = (f"{cfg['replicas']} replica(s) behind HAProxy (deploy/haproxy.cfg, sticky cookie)" if cfg["proxy"]
             else "one replica, connected to directly")
    title = title or f"## Protocol load: {where}, tower state on {cfg['tower_state']}"
    la, lb = report["load_before"], report["load_after"]
    text = [title, "",
            f"Measured {report['date']} with `{report['command']}` on {m['cpu']}, {m['cores']} cores, "
            f"{m['memory_gb']} GB RAM; Python {m['python']}, Streamlit {m['streamlit']}. Load average "
            f"(1/5/15 min) before {la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f}, after {lb[0]:.1f}/{lb[1]:.1f}/{lb[2]:.1f} "
            "(the machine is shared with other engineers' jobs: read the figures with it). "
            f"Wall time {report['wall_s']:.0f} s."
            + (f" Page-run slots per replica: {cfg['page_run_slots']} (`--page-run-slots`)."
               if cfg.get("page_run_slots") else ""),
            "",
            "**What this measures.** No browser: each session speaks Streamlit's websocket protocol "
            "(`/_stcore/stream`, protobuf `BackMsg`/`ForwardMsg`) as the front end does, after signing in "
            "through the demo's OIDC provider for real (xsrf cookie, the Sign in button's `auth_redirect`, "
            "the provider's form, `/oauth2callback`). All sessions of a level connect, then walk "
            + " → ".join(cfg["pages"]) + " at the same instant, with no pause, one `rerun_script` per page on "
            "their websocket (as following the sidebar's links). *First delta*: rerun_script sent → the "
            "page's first element arrives (the sidebar's, app.py draws it before the page); *title*: → the "
            "page's own title (ui/page.py draws it before the page waits for a page-run slot); *script "
            "finished*: → `script_finished`. A page succeeds when its "
            "script finished and drew its title, with no exception, error box or sign-in screen. Users: "
            + ", ".join(cfg["users"]) + " (the people who may open every page of the walk). The "
            "browser benchmark (bench.load) stays as the smaller realism check: there 20 Chromium renderers "
            "take the 2 cores and the server is not what is measured; here all the CPU the sessions "
            "cost the machine is the server's (the generator's own share is shown).", ""]
    text += ["### Levels", "", levels_table(report), "",
             "*server CPU*: the replica processes' CPU (/proc, all threads) during the walk; *per page run*: that ÷ "
             "the full script runs the servers recorded; *growth*: replicas' RSS after the walk − before it "
             "(sessions are kept 120 s after they disconnect, so this includes them).", ""]
    for lv in report["levels"]:
        text += [f"#### {lv['sessions']} sessions", "", pages_table(lv), ""]
        if lv["failures"]:
            text += [f"Failures ({lv['failed']}):", ""] + [f"- session {f['session']} ({f['user']}): {f['reason']}"
                                                           for f in lv["failures"]] + [""]
        text += [f"Sign-in round trips before the walk: p50 {_s(lv['signin']['p50'])} s, "
                 f"p95 {_s(lv['signin']['p95'])} s ({lv['signin_wall_s']:.0f} s for all, "
                 f"{lv.get('signin_retries', 0)} retried after a reset connection)."]
        for name, runs in lv["server_runs"].items():
            text.append(f"Server {name}: {runs['cpu']['n']} full script runs, wall p50 {_s(runs['wall']['p50'])} / "
                        f"p95 {_s(runs['wall']['p95'])} s, script-thread CPU p50 {_s(runs['cpu']['p50'])} / "
                        f"p95 {_s(runs['cpu']['p95'])} s.")
            pages = lv.get("server_cpu_by_page", {}).get(name, {})
            if pages:
                text.append("Script-thread CPU per run by page, p50: " + ", ".join(
                    f"{page} {_s(st['p50'])} s" for page, st in pages.items()) + ".")
        text.append("")
    text += ["### CPU during the walk", ""] + [line for lv in report["levels"] for line in cpu_lines(lv)] + [""]
    text += ["### What two cores allow", ""] + bound(report) + [""]
    text += ["### Targets (50 sessions starting at once)", ""] + targets(report)
    return "\n".join(text)


def print_report(report: dict[str, Any]) -> None:
    print(levels_table(report))
    for line in targets(report):
        print(line)
