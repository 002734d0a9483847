"""Replicas of the app behind HAProxy (deploy/haproxy.cfg), as the README's Deployment section runs them.

The demo's OIDC provider, N ``streamlit run app.py`` processes on free loopback ports, sharing one
cookie secret (the sign-in cookie of one is valid on the others) and whatever store URLs ``env``
gives them (the tower state on PostgreSQL for real replicas), and HAProxy in front with the repo's own
config, its addresses from the environment. The redirect URI names the proxy, since that is the
host the browser types. Used by tests/deploy and by bench.protocol_load.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from services.demo.processes import free_port, stop_process_group
from services.demo.serve import demo_secrets_file, provider_command
from services.settings import PROJECT_ROOT, load_settings
from tests.support.live_app import wait_for

HAPROXY_CONFIG = PROJECT_ROOT / "deploy" / "haproxy.cfg"


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None)


@dataclass
class Replica:
    name: str           # app1, app2: the value HAProxy's tower_replica cookie takes for it
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        stop_process_group(self.process)


@dataclass
class Deployment:
    url: str                       # what a browser opens: the proxy (or the only replica, without one)
    oidc_url: str
    replicas: list[Replica]
    proxy: subprocess.Popen[bytes] | None = None
    logs: Path = field(default_factory=Path)

    @property
    def pids(self) -> dict[str, int]:
        found = {r.name: r.pid for r in self.replicas}
        if self.proxy is not None:
            found["haproxy"] = self.proxy.pid
        return found


def clean_env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOWER_", "MLFLOW_TRACKING", "WAREHOUSE_"))}
    env.update({"TOWER_DATA_DIR": str(data_dir), "TOWER_DEMO": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                **(extra or {})})
    return env


@contextmanager
def deployment(data_dir: Path, replicas: int = 2, *, proxy: bool = True, env: dict[str, str] | None = None,
               app_command: list[str] | None = None, replica_env: dict[str, dict[str, str]] | None = None,
               startup_s: float = 90.0) -> Iterator[Deployment]:
    """Serve the demo in ``data_dir`` from ``replicas`` processes, behind HAProxy when ``proxy``.

    ``app_command`` replaces ``python -m streamlit`` (the benchmark's timing hook); ``replica_env``
    adds variables per replica name. With one replica behind the proxy both of the config's server
    lines name the same process: the same proxy path, one replica.
    """
    if replicas < 1 or (not proxy and replicas != 1):
        raise ValueError("one replica without a proxy, or one or more behind it")
    if proxy and replicas > 2:
        raise ValueError("deploy/haproxy.cfg names two replicas")
    haproxy = haproxy_binary() if proxy else None
    if proxy and haproxy is None:
        raise RuntimeError("haproxy is not installed (apt-get install -y haproxy)")
    ports = [free_port() for _ in range(replicas)]
    public_port, oidc_port = (free_port() if proxy else ports[0]), free_port()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base_env = clean_env(data_dir, env)
    secrets = demo_secrets_file(load_settings({"TOWER_DATA_DIR": str(data_dir)}), port=public_port,
                                oidc_port=oidc_port)
    command = app_command or [sys.executable, "-m", "streamlit"]
    with ExitStack() as stack:
        provider_log = logs / "oidc.log"
        provider = subprocess.Popen(provider_command(oidc_port), stdout=stack.enter_context(provider_log.open("wb")),
                                    stderr=subprocess.STDOUT, start_new_session=True, env=base_env)
        stack.callback(stop_process_group, provider)
        started: list[Replica] = []
        for index, port in enumerate(ports, start=1):
            name, log = f"app{index}", logs / f"streamlit-app{index}.log"
            process = subprocess.Popen(
                [*command, "run", str(PROJECT_ROOT / "app.py"), "--server.port", str(port),
                 "--server.address", "127.0.0.1", "--server.headless", "true", "--secrets.files", str(secrets)],
                stdout=stack.enter_context(log.open("wb")), stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
                env={**base_env, **(replica_env or {}).get(name, {})}, start_new_session=True)
            replica = Replica(name, port, process, log)
            stack.callback(replica.stop)
            started.append(replica)
        wait_for(f"http://127.0.0.1:{oidc_port}/.well-known/openid-configuration", 30, provider_log)
        for replica in started:
            wait_for(f"http://127.0.0.1:{replica.port}/_stcore/health", startup_s, replica.log)
        # The proxy starts once every replica answers: its health checks then find them all up, and new
        # browsers are spread over all of them from the first one.
        balancer = None
        if proxy:
            addresses = [f"127.0.0.1:{p}" for p in ports] * (2 // replicas)
            proxy_log = logs / "haproxy.log"
            balancer = subprocess.Popen(
                [str(haproxy), "-db", "-f", str(HAPROXY_CONFIG)], stdout=stack.enter_context(proxy_log.open("wb")),
                stderr=subprocess.STDOUT, start_new_session=True,
                env={**base_env, "TOWER_PROXY_BIND": f"127.0.0.1:{public_port}",
                     "TOWER_REPLICA_1": addresses[0], "TOWER_REPLICA_2": addresses[1]})
            stack.callback(stop_process_group, balancer)
        if proxy:
            wait_for(f"http://127.0.0.1:{public_port}/_stcore/health", 30, logs / "haproxy.log")
        yield Deployment(url=f"http://localhost:{public_port}", oidc_url=f"http://127.0.0.1:{oidc_port}",
                         replicas=started, proxy=balancer, logs=logs)
