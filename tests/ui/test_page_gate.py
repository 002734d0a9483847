"""The page frame's gate (ui/page.py, services/run_gate.py) on a real Streamlit server, over its websocket.

One server with one page-run slot serves tests/support/gated_page_app.py (the real ``page`` frame).
Each test is a few sessions speaking Streamlit's protocol (bench/protocol_load/wire.py), as browsers do:
the bound holds, the title goes out before a page waits its turn, and a run that is stopped, superseded,
disconnected or fails never keeps its slot or its place in the queue (any such leak would make every
later run on the server wait forever, which the timed runs below would report).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bench.protocol_load.signin import xsrf_cookies
from bench.protocol_load.wire import PageRun, StreamSession
from services.demo.processes import free_port, stop_process_group
from services.settings import PROJECT_ROOT
from tests.support.live_app import wait_for

APP = PROJECT_ROOT / "tests" / "support" / "gated_page_app.py"
TITLE = "Gated page"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("gate")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOWER_", "MLFLOW_TRACKING", "WAREHOUSE_"))}
    env.update({"TOWER_DATA_DIR": str(folder), "TOWER_DEMO": "1", "TOWER_PAGE_RUN_SLOTS": "1"})
    log = folder / "streamlit.log"
    with log.open("wb") as out:
        app = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
                                "--server.address", "127.0.0.1", "--server.headless", "true"],
                               stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, env=env, start_new_session=True)
        try:
            wait_for(f"http://127.0.0.1:{port}/_stcore/health", 60, log)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process_group(app)


async def _open(url: str) -> StreamSession:
    with requests.Session() as http:
        cookies = await asyncio.to_thread(xsrf_cookies, http, url)
    return await StreamSession.open(url, cookies)


async def _run(url: str, query: str, after_s: float = 0.0, timeout_s: float = 30.0) -> PageRun:
    await asyncio.sleep(after_s)
    stream = await _open(url)
    try:
        return await stream.run_page("", query, timeout_s=timeout_s)
    finally:
        await stream.close()


def _report(url: str, group: str) -> str:
    run = asyncio.run(_run(url, f"report={group}"))
    assert run.ok, run.status
    return run.alerts[-1]


def test_no_more_page_runs_than_slots_do_their_data_work_at_once(server):
    async def burst() -> list[PageRun]:
        return await asyncio.gather(*(_run(server, "group=bound&hold=0.4") for _ in range(4)))

    runs = asyncio.run(burst())

    assert all(r.ok and r.title == TITLE and "done bound" in r.alerts for r in runs), [r.status for r in runs]
    assert _report(server, "bound") == "most=1 entered=4"
    # one at a time: the last of four 0.4 s holds ends 1.6 s or more after they all asked
    assert max(r.finished_s or 0 for r in runs) >= 1.5


def test_a_waiting_page_shows_its_title_before_its_turn(server):
    async def two() -> tuple[PageRun, PageRun]:
        first = asyncio.create_task(_run(server, "group=title-a&hold=3"))
        second = await _run(server, "group=title-b", after_s=0.5)
        return await first, second

    holder, waiter = asyncio.run(two())

    assert holder.ok and waiter.ok, (holder.status, waiter.status)
    assert waiter.title == TITLE and waiter.first_delta_s is not None and waiter.finished_s is not None
    assert waiter.finished_s > 2.0  # it did wait for the holder's slot …
    assert waiter.first_delta_s < waiter.finished_s - 1.5  # … with its title already on the screen


async def _finished_within(stream: StreamSession, timeout_s: float) -> float:
    """Seconds until the run on ``stream`` sends ``script_finished``."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    started = time.perf_counter()

    async def read() -> None:
        while ForwardMsg.FromString(await stream._ws.recv()).WhichOneof("type") != "script_finished":
            pass

    await asyncio.wait_for(read(), timeout_s)
    return time.perf_counter() - started


async def _hold_then(url: str, group: str, action: str) -> tuple[float, PageRun, float | None]:
    """Session A holds the slot for 3 s; session B asks 0.5 s later and, 0.5 s after that, ``action``:
    "stop" (the browser's stop), "rerun" (asks for the page again, with hold=0), "leave" (disconnects).
    Session C asks at 1.5 s. Returns how long C took from its request, C's run, and for "stop" how
    long B's run took to end after the stop."""
    holder = asyncio.create_task(_run(url, f"group={group}-a&hold=3"))
    await asyncio.sleep(0.5)
    b = await _open(url)
    from streamlit.proto.BackMsg_pb2 import BackMsg

    back = BackMsg()
    back.rerun_script.query_string = f"group={group}-b"
    await b._ws.send(back.SerializeToString())
    await asyncio.sleep(0.5)
    superseding, stopped_s = None, None
    if action == "stop":
        stop = BackMsg()
        stop.stop_script = True
        await b._ws.send(stop.SerializeToString())
        stopped_s = await _finished_within(b, 10)
    elif action == "rerun":
        superseding = asyncio.create_task(b.run_page("", f"group={group}-b2", timeout_s=30))
    else:
        await b.close()
    c = await _run(url, f"group={group}-c", after_s=0.5)
    assert (await holder).ok
    if superseding is not None:
        rerun = await superseding
        assert rerun.ok and f"done {group}-b2" in rerun.alerts, rerun.status
    if action != "leave":
        await b.close()
    return c.finished_s or 0.0, c, stopped_s


@pytest.mark.parametrize("action", ["stop", "rerun", "leave"])
def test_a_waiting_run_that_is_stopped_superseded_or_left_gives_up_its_place(server, action):
    c_s, c, stopped_s = asyncio.run(_hold_then(server, f"wait-{action}", action))

    assert c.ok and f"done wait-{action}-c" in c.alerts, c.status
    assert c_s < 10  # never stuck behind the abandoned run's place
    # the abandoned run never did its data work (a run that ignored the stop would have, after A)
    assert _report(server, f"wait-{action}-b") == "most=0 entered=0"
    if action == "stop":  # at once: the wait itself looks for the stop, not only the note it shows after 2 s
        assert stopped_s is not None and stopped_s < 1.0, stopped_s


def test_a_holder_that_is_stopped_gives_its_slot_back_at_once(server):
    async def stopped() -> tuple[PageRun, PageRun]:
        a = await _open(server)
        from streamlit.proto.BackMsg_pb2 import BackMsg

        back = BackMsg()
        back.rerun_script.query_string = "group=hstop-a&hold=20"
        await a._ws.send(back.SerializeToString())
        await asyncio.sleep(0.5)
        waiter = asyncio.create_task(_run(server, "group=hstop-b"))
        await asyncio.sleep(0.5)
        stop = BackMsg()
        stop.stop_script = True
        await a._ws.send(stop.SerializeToString())
        b = await waiter
        await a.close()
        return b, b

    b, _ = asyncio.run(stopped())

    assert b.ok and "done hstop-b" in b.alerts, b.status
    assert (b.finished_s or 99) < 5  # not the holder's 20 s


def test_a_holder_that_fails_gives_its_slot_back(server):
    failed = asyncio.run(_run(server, "group=fail-a&fail=1"))
    after = asyncio.run(_run(server, "group=fail-b", timeout_s=10))

    assert failed.status.startswith("exception"), failed.status  # the message itself is redacted (config.toml)
    assert after.ok and "done fail-b" in after.alerts, after.status
