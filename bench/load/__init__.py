"""Load benchmark: N concurrent real browser sessions against `streamlit run` (target: p95 first render < 5 s).

    python -m bench.load [--sessions 20] [--walks 2] [--think 0] [--ramp 0] [--rounds 1]
                         [--out bench/RESULTS.md] [--json report.json]

**Setup.** The demo is seeded once into a cache folder (``.tower/bench-load/template``; re-seeded
when its logs no longer end yesterday), monitoring is run on it, and each run serves a private copy
with the demo's local OIDC provider and ``streamlit run app.py`` on free loopback ports, started as
``tests.support.live_app`` starts them (``server.serve``) with one addition: every script run's wall
and CPU time is recorded inside the server.

**Sessions.** One Debian Chromium (``/usr/bin/chromium`` with ``live_app.CHROMIUM_ARGS``) holds N
isolated browser contexts driven concurrently from one asyncio loop (Playwright's async API). One
Playwright driver for all sessions costs a few percent of a core (measured, reported), so a thread
and a driver per session would only add load. Each session signs in through the OIDC provider
(sessions spread over the demo users), then walks the fleet, the drift explorer
(``?model=credit-risk``) and the model detail (``?model=fraud-detection``) pages ``--walks`` times,
optionally pausing ``--think`` seconds (±50 %) before each step like a reading user. Per page:

* **first render**: from navigation start (the new document's ``performance.timeOrigin``) until the
  page's ``h1`` title and its main element (fleet: the data frame; drift: the heat map chart; model:
  the versions data frame) are visible;
* **complete**: until the script has finished (``stApp[data-test-script-state=notRunning]``) and no
  element is stale, a skeleton or a spinner;
* **rerun**: from just before a widget interaction (fleet: type a filter; drift: pick another
  feature; model: pick another model) until a new script run has started *and* the page is complete
  again.

Times are taken inside the page (a MutationObserver plus a 50 ms timer; ``performance.now()``), so
the Python driver's own scheduling is not counted. A session fails if any step raises or times out
(``--step-timeout``); the step and the reason are recorded and its last screen is kept.

**Server.** The Streamlit process's RSS (``/proc/<pid>/status`` VmRSS) is read idle, after one
warm-up session (imports and data caches filled once per process), after each round of N sessions
(and ``--release`` seconds later: disconnected sessions are kept ``server.disconnectedSessionTTL``,
120 s). The CPU of every process is sampled during the load and attributed to the server, Chromium,
the rest of this benchmark and the machine's other processes; the server's own record of its script
runs, and each page's script timed alone in AppTest after the server has stopped, separate the
server's share of the latency from the browser's.

**Modules.** ``cli`` (the options; ``__main__`` runs it), ``run`` (warm-up, rounds, AppTest timings,
the aggregate figures), ``session`` (one browser session), ``pages`` (the pages walked and the scripts
installed in them), ``server`` (the demo template and the served app), ``machine`` (RSS and CPU from
/proc), ``results`` (a session's measurements, percentile summaries), ``report`` (console and Markdown).
"""
