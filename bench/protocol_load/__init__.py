"""Protocol-level load: N concurrent Streamlit sessions over the websocket protocol, no browser.

    python -m bench.protocol_load [--sessions 20 50 100] [--replicas 1|2] [--proxy] [--postgres [URL]]
                                  [--out bench/RESULTS.md] [--section protocol-load] [--json report.json]

bench.load drives real Chromium sessions; on this machine's 2 cores the 20 renderers take the CPU and
the server is never what is measured. Here each session is a websocket speaking Streamlit's own
protocol (``wire``), signed in through the demo's OIDC provider for real (``signin``), and walks
fleet → drift → model → review with no pause, all sessions of a level at once (``walk``). Per page:
success, time to the first delta and to ``script_finished``; per level: the CPU of every process
(/proc), the replicas' RSS before and after, and their own record of their script runs (the timing
hook of bench.load.server).

**Replicas.** ``--replicas 2`` serves two ``streamlit run`` processes behind HAProxy with the repo's
``deploy/haproxy.cfg`` (sticky by cookie; tests/support/replicas.py starts it), the tower state on a
PostgreSQL database of its own (``tower_state``); ``--replicas 1 --proxy`` is the same path with one
replica, for the comparison.

**Modules.** ``wire`` (one websocket session), ``signin`` (the cookie, through the real round trip),
``walk`` (the pages, one session's walk), ``run`` (the deployment, the levels, the figures),
``tower_state`` (the PostgreSQL clone), ``report`` (Markdown), ``cli``.
"""
