"""A real Spark standalone cluster on loopback with a Thrift (HiveServer2) server, for the Spark tests.

``run_spark_cluster`` starts, from the ``pyspark`` wheel's own scripts, a standalone master, two
workers (one core each) and the Spark Thrift server as the cluster's one application, each JVM in
its own process group and bounded in memory; every port is picked free, every file (work, local,
warehouse and Derby metastore directories, logs) lives in one folder. It waits until the master
lists both workers and the Thrift port answers ``SELECT 1`` through PyHive, yields the cluster, and
on exit kills the process groups so no JVM outlives the test session (executors are children of the
workers, so they go with them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.demo.processes import free_port, stop_process_group

STARTUP_TIMEOUT_S = 150.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_CHARS = 3000
WORKERS = 2
# Each JVM stays small: the machine running the tests has two cores and other work to do.
DAEMON_MEMORY = "256m"  # master and workers
WORKER_MEMORY = "640m"  # what a worker may hand out to executors
EXECUTOR_MEMORY = "512m"
DRIVER_MEMORY = "768m"  # the Thrift server is the application's driver
# Start-up dominates a test session's use of these JVMs: the C1 compiler alone and the serial collector
# start them faster and use fewer threads on a small machine; the tests' data are small.
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Duser.timezone=UTC"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def spark_home() -> Path:
    """Where the ``pyspark`` wheel keeps bin/, jars/ (the standalone cluster ships inside it)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def java_missing_reason() -> str | None:
    """Why Spark cannot run here (no Java, no pyspark/pyhive), or None when it can."""
    java = Path(os.environ["JAVA_HOME"]) / "bin" / "java" if os.environ.get("JAVA_HOME") else shutil.which("java")
    if java is None or not Path(java).exists():
        return "Java is not installed (no JAVA_HOME, no `java` on PATH): the Spark cluster needs a JRE 17+"
    return None


@dataclass
class SparkCluster:
    """The running cluster: the Thrift server's SQLAlchemy URL, and where its files and logs are."""

    thrift_port: int
    master_url: str
    master_ui: str
    folder: Path
    logs: dict[str, Path] = field(default_factory=dict)
    started_in_s: float = 0.0

    @property
    def url(self) -> str:
        return f"hive://127.0.0.1:{self.thrift_port}/default"

    def data_dir(self) -> Path:
        """A folder the cluster's JVMs can read, for the Parquet files of test tables."""
        path = self.folder / "data"
        path.mkdir(exist_ok=True)
        return path

    def log_tails(self) -> str:
        return "\n".join(f"--- {name} ({path}) ---\n{_tail(path)}" for name, path in self.logs.items())


def _tail(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<log unreadable: {exc}>"
    return text[-LOG_TAIL_CHARS:] if text else "<log empty>"


def _environment(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_", "HADOOP_CONF"))}
    env.update({
        "SPARK_HOME": str(spark_home()),
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        "SPARK_LOCAL_DIRS": str(folder / "local"),
        "SPARK_LOG_DIR": str(folder / "logs"),
        "SPARK_WORKER_DIR": str(folder / "work"),
        "SPARK_CONF_DIR": str(folder / "conf"),  # empty: no spark-defaults.conf of the machine applies
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_NO_DAEMONIZE": "1",
        "SPARK_DAEMON_JAVA_OPTS": JVM_OPTIONS,
        # No REST submission server: it would listen on the fixed port 6066.
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        "TZ": "UTC",
    })
    return env


def _master_workers(ui: str) -> int:
    """How many ALIVE workers the master lists (0 while it is not answering)."""
    try:
        with _DIRECT.open(f"{ui}/json/", timeout=2) as response:
            state = json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError):
        return 0
    return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")


def _thrift_answers(port: int) -> bool:
    from pyhive import hive

    try:  # a plain connect first: thrift logs an ERROR for every refused attempt
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    try:
        conn = hive.connect(host="127.0.0.1", port=port, username="tower")
    except Exception:
        return False
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT 1")
        return cursor.fetchall() == [(1,)]
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            conn.close()


@contextlib.contextmanager
def run_spark_cluster(folder: Path, *, startup_timeout_s: float = STARTUP_TIMEOUT_S) -> Iterator[SparkCluster]:
    """A master, two workers and a Thrift server for the duration of the block (files under ``folder``)."""
    folder = Path(folder)
    for name in ("local", "logs", "work", "conf", "warehouse"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    home = spark_home()
    env = _environment(folder)
    master_port, master_ui_port, thrift_port = free_port(), free_port(), free_port()
    cluster = SparkCluster(thrift_port, f"spark://127.0.0.1:{master_port}", f"http://127.0.0.1:{master_ui_port}",
                           folder)
    procs: list[subprocess.Popen[Any]] = []

    def start(name: str, command: list[str], **extra_env: str) -> subprocess.Popen[Any]:
        log_path = folder / "logs" / f"{name}.log"
        cluster.logs[name] = log_path
        with log_path.open("wb") as log:
            proc = subprocess.Popen(  # fixed argv: the pyspark wheel's own launch scripts
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=folder, env={**env, **extra_env}, start_new_session=True,
            )
        procs.append(proc)
        return proc

    def failed(what: str) -> RuntimeError:
        return RuntimeError(f"The Spark test cluster {what}.\n{cluster.log_tails()}")

    started = time.monotonic()
    try:
        spark_class = str(home / "bin" / "spark-class")
        start("master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                         "--port", str(master_port), "--webui-port", str(master_ui_port)])
        for i in range(WORKERS):
            start(f"worker-{i + 1}", [
                spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                "--webui-port", str(free_port()), "--cores", "1", "--memory", WORKER_MEMORY,
                "--work-dir", str(folder / "work" / f"worker-{i + 1}"), cluster.master_url,
            ])
        metastore = folder / "metastore_db"
        start("thriftserver", [
            str(home / "bin" / "spark-submit"), "--master", cluster.master_url,
            "--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2", "--name", "tower-tests",
            "--driver-memory", DRIVER_MEMORY, "--executor-memory", EXECUTOR_MEMORY,
            "--conf", f"spark.cores.max={WORKERS}", "--conf", "spark.executor.cores=1",
            "--conf", "spark.ui.enabled=false",
            "--conf", "spark.sql.session.timeZone=UTC",
            "--conf", f"spark.sql.warehouse.dir={folder / 'warehouse'}",
            "--conf", "spark.sql.shuffle.partitions=4",  # small data: 200 tiny tasks per shuffle only cost time
            "--conf", f"spark.driver.extraJavaOptions={JVM_OPTIONS} -Dderby.system.home={folder}",
            "--conf", f"spark.executor.extraJavaOptions={JVM_OPTIONS}",
            # Go on to the metastore while the executors start, instead of waiting up to 30 s for them.
            "--conf", "spark.scheduler.maxRegisteredResourcesWaitingTime=0s",
            "--hiveconf", "hive.server2.logging.operation.enabled=false",
            "--hiveconf", f"hive.server2.thrift.port={thrift_port}",
            "--hiveconf", "hive.server2.thrift.bind.host=127.0.0.1",
            "--hiveconf", f"javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName={metastore};create=true",
            "spark-internal",
        ], SPARK_DAEMON_MEMORY=DRIVER_MEMORY)  # spark-submit sizes the Thrift server's JVM by this, not --driver-memory
        deadline = time.monotonic() + startup_timeout_s
        while not (_master_workers(cluster.master_ui) >= WORKERS and _thrift_answers(thrift_port)):
            for name, proc in zip(cluster.logs, procs, strict=True):
                if proc.poll() is not None:
                    raise failed(f"{name} exited with code {proc.returncode} while starting")
            if time.monotonic() > deadline:
                raise failed(f"did not answer SELECT 1 on port {thrift_port} with {WORKERS} workers "
                             f"within {startup_timeout_s:.0f} s")
            time.sleep(0.5)
        cluster.started_in_s = time.monotonic() - started
        yield cluster
    finally:
        for proc in reversed(procs):  # the Thrift server first, so it does not log the workers going away
            stop_process_group(proc, STOP_TIMEOUT_S)
