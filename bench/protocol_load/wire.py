"""One Streamlit session over its own websocket protocol, as the browser's front end speaks it.

The handshake (Streamlit 1.67, ``web/server/starlette/starlette_websocket.py``): the browser first
gets the ``_streamlit_xsrf`` cookie from an HTTP answer (``/_stcore/health`` sets it), then opens
``/_stcore/stream`` with the same-origin ``Origin`` header, its cookies, and the subprotocol header
``streamlit, <the xsrf cookie's value>[, <session id to resume>]``: only then does the server read the
signed ``_streamlit_user`` cookie. Every message is a protobuf: ``BackMsg`` up, ``ForwardMsg`` down. A
page is asked for with ``BackMsg.rerun_script`` (a ``ClientState``: ``page_name`` is the page's url
path, ``query_string`` its query); the server answers ``new_session``, deltas, and ``script_finished``.
Nothing is rendered: the deltas are counted and scanned for an exception or an error box.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.asyncio.client import ClientConnection, connect

XSRF_COOKIE = "_streamlit_xsrf"
RUN_ENDS = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR}


class ProtocolError(RuntimeError):
    """The server answered something a browser would not have accepted."""


@dataclass
class PageRun:
    """What one script run sent back, timed from the moment its rerun_script left this client."""

    first_delta_s: float | None = None
    title_s: float | None = None  # when the page's own title (its first heading) arrived
    finished_s: float | None = None
    deltas: int = 0
    bytes: int = 0
    status: str = ""             # "ok", or what went wrong
    buttons: dict[str, str] = field(default_factory=dict)   # label -> widget id
    text_areas: dict[str, str] = field(default_factory=dict)  # label -> widget id
    alerts: list[str] = field(default_factory=list)          # every st.success/info/warning/error body
    auth_redirect: str | None = None
    page_hash: str | None = None
    title: str | None = None      # the first heading of the page (its st.title)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


class StreamSession:
    """One open ``/_stcore/stream`` connection: one Streamlit session on the server."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self.session_id: str | None = None

    @classmethod
    async def open(cls, base_url: str, cookies: dict[str, str], timeout_s: float = 30.0,
                   resume: str | None = None) -> StreamSession:
        """Connect as the browser at ``base_url`` does; ``cookies`` must hold the xsrf cookie.
        ``resume``: the session id a reconnecting front end asks to keep (a server that does not
        know it starts a new session)."""
        xsrf = cookies.get(XSRF_COOKIE)
        if not xsrf:
            raise ProtocolError("no _streamlit_xsrf cookie: get /_stcore/health first")
        parts = urlsplit(base_url)
        ws_url = ("wss" if parts.scheme == "https" else "ws") + f"://{parts.netloc}{parts.path.rstrip('/')}/_stcore/stream"
        offered = ["streamlit", xsrf] + ([resume] if resume else [])
        ws = await connect(ws_url, subprotocols=offered,  # type: ignore[arg-type]
                           additional_headers={"Origin": f"{parts.scheme}://{parts.netloc}",
                                               "Cookie": cookie_header(cookies)},
                           max_size=None, open_timeout=timeout_s, ping_interval=None, compression=None)
        return cls(ws)

    async def close(self) -> None:
        await self._ws.close()

    async def wait_closed_by_server(self, timeout_s: float) -> bool:
        """True once the server side has closed the connection (its process stopped), within ``timeout_s``."""
        try:
            await asyncio.wait_for(self._ws.wait_closed(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def run_page(self, page_name: str, query: str = "", *, widgets: list[dict[str, Any]] | None = None,
                       timeout_s: float = 60.0) -> PageRun:
        """Ask for a full run of ``page_name`` (url path; "" is the default page) and read until it ends."""
        back = BackMsg()
        state = back.rerun_script
        state.page_name, state.query_string = page_name, query
        state.context_info.timezone, state.context_info.locale = "UTC", "en-US"
        for widget in widgets or []:
            w = state.widget_states.widgets.add()
            w.id = widget["id"]
            if "trigger" in widget:
                w.trigger_value = widget["trigger"]
            if "text" in widget:
                w.string_value = widget["text"]
        run = PageRun()
        sent = time.perf_counter()
        await self._ws.send(back.SerializeToString())
        try:
            await asyncio.wait_for(self._read_run(run, sent), timeout_s)
        except TimeoutError:
            run.status = f"no script_finished within {timeout_s:.0f} s"
        return run

    async def _read_run(self, run: PageRun, sent: float) -> None:
        started = False
        while True:
            frame = await self._ws.recv()
            if isinstance(frame, str):
                raise ProtocolError("a text frame on /_stcore/stream")
            msg = ForwardMsg.FromString(frame)
            kind = msg.WhichOneof("type")
            if msg.metadata.run.fragment_ids:  # a fragment's run is not the page run asked for
                continue
            if kind == "new_session":
                started = True
                self.session_id = msg.new_session.initialize.session_id or self.session_id
                run.page_hash = msg.new_session.page_script_hash
            elif kind == "delta" and started:
                run.deltas += 1
                run.bytes += len(frame)
                if run.first_delta_s is None:
                    run.first_delta_s = time.perf_counter() - sent
                _scan(msg, run)
                if run.title is not None and run.title_s is None:
                    run.title_s = time.perf_counter() - sent
            elif kind == "auth_redirect":
                run.auth_redirect = msg.auth_redirect.url
            elif kind == "page_not_found":
                run.errors.append(f"page not found: {msg.page_not_found.page_name!r}")
            elif kind == "script_finished" and started:
                if msg.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    continue
                run.finished_s = time.perf_counter() - sent
                if msg.script_finished != ForwardMsg.FINISHED_SUCCESSFULLY:
                    run.errors.append("the script did not compile")
                run.status = "ok" if not run.errors else "; ".join(run.errors)[:300]
                return


def _scan(msg: ForwardMsg, run: PageRun) -> None:
    delta = msg.delta
    if delta.WhichOneof("type") != "new_element":
        return
    element = delta.new_element
    kind = element.WhichOneof("type")
    if kind == "exception":
        run.errors.append(f"exception: {element.exception.type}: {element.exception.message[:120]}")
    elif kind == "alert":
        run.alerts.append(element.alert.body)
        if element.alert.format == Alert.ERROR:
            run.errors.append(f"error box: {element.alert.body[:160]}")
    elif kind == "text_area":
        run.text_areas[element.text_area.label] = element.text_area.id
    elif kind == "heading" and run.title is None:
        run.title = element.heading.body
    elif kind == "button":
        run.buttons[element.button.label] = element.button.id
