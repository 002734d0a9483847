"""A real app for browser tests: the demo's OIDC provider and `streamlit run` on free loopback ports.

Chromium comes from Debian (/usr/bin/chromium) and is driven by Playwright's Python package; no
browser is ever downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from services.demo import processes
from services.demo.processes import free_port, stop_process_group
from services.demo.serve import demo_secrets_file, provider_command
from services.settings import PROJECT_ROOT, load_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"


def wait_for(url: str, timeout_s: float, log: Path | None = None) -> None:
    """Wait for a test server; if it never answers, fail with the tail of its log."""
    if processes.wait_for(url, timeout_s):
        return
    detail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s.\n{detail}")


@dataclass(frozen=True)
class LiveApp:
    url: str          # http://localhost:<port>, the host the redirect URI names
    oidc_url: str
    data_dir: Path


@contextmanager
def live_app(data_dir: Path, env: dict[str, str] | None = None) -> Iterator[LiveApp]:
    """Serve the app on the demo in ``data_dir`` with sign-in through the local OIDC provider."""
    port, oidc_port = free_port(), free_port()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("TOWER_", "MLFLOW_TRACKING", "WAREHOUSE_"))}
    base_env.update({"TOWER_DATA_DIR": str(data_dir), "TOWER_DEMO": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                     **(env or {})})
    secrets = demo_secrets_file(load_settings({"TOWER_DATA_DIR": str(data_dir)}), port=port, oidc_port=oidc_port)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    provider_log, app_log = logs / "oidc.log", logs / "streamlit.log"
    with provider_log.open("wb") as plog, app_log.open("wb") as alog:
        provider = subprocess.Popen(provider_command(oidc_port), stdout=plog, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=base_env)
        app = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "app.py"), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--secrets.files", str(secrets)],
            stdout=alog, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, env=base_env, start_new_session=True)
        try:
            wait_for(f"http://127.0.0.1:{oidc_port}/.well-known/openid-configuration", 30, provider_log)
            wait_for(f"http://127.0.0.1:{port}/_stcore/health", 60, app_log)
            yield LiveApp(url=f"http://localhost:{port}", oidc_url=f"http://127.0.0.1:{oidc_port}", data_dir=data_dir)
        finally:
            stop_process_group(app)
            stop_process_group(provider)


@contextmanager
def live_app_on_copy(template: Path, folder: Path) -> Iterator[LiveApp]:
    """``live_app`` on a private copy of the seeded demo in ``template``, made under ``folder``."""
    data_dir = folder / "demo"
    shutil.copytree(template, data_dir)
    with live_app(data_dir) as running:
        yield running


def chromium_available() -> bool:
    return CHROMIUM.exists() and shutil.which("chromium") is not None


def sign_in(page, app: LiveApp, user: str, path: str = "/") -> None:
    """Open ``path`` signed out, sign in as ``user`` at the demo's provider, wait to be back."""
    page.goto(app.url + path)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(app.oidc_url + "/oauth2/authorize**", timeout=20_000)
    page.get_by_role("button", name=user, exact=True).click()
    page.wait_for_url(app.url + "/**", timeout=20_000)
    page.get_by_text("Signed in as").wait_for(timeout=30_000)


def keep(page, name: str) -> None:
    """Keep the page's screen as test-artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
