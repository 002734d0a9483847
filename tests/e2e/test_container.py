"""The Dockerfile, checked without a Docker engine: its rules are read, and the environment it
describes (runtime requirements only, only the files it copies, its CMD and HEALTHCHECK) is built
in a temporary folder and must serve the app."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys

import pytest

from services.settings import PROJECT_ROOT
from tests.support.live_app import free_port, wait_for

DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text()


def instructions(stage: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of one build stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    body = next(s for s in stages if s.split("\n", 1)[0].strip().endswith(f"AS {stage}"))
    lines = [ln.strip() for ln in body.split("\n")[1:] if ln.strip() and not ln.strip().startswith("#")]
    return [tuple(ln.split(" ", 1)) for ln in lines]  # type: ignore[misc]


def test_base_images_are_pinned_to_an_exact_version():
    for base in re.findall(r"^FROM (\S+)", DOCKERFILE, flags=re.M):
        assert re.match(r"^[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?$", base), base


def test_runtime_runs_as_a_non_root_user_with_a_health_check_on_stcore_health():
    runtime = instructions("runtime")
    users = [args for kind, args in runtime if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    health = [args for kind, args in runtime if kind == "HEALTHCHECK"]
    assert health and "/_stcore/health" in health[0]


def test_no_secret_is_copied_into_the_image():
    copied = " ".join(args for kind, args in instructions("runtime") + instructions("build") if kind in ("COPY", "ADD"))
    assert "secrets.toml" not in copied and ".tower" not in copied and ".env" not in copied
    ignored = (PROJECT_ROOT / ".dockerignore").read_text()
    assert ".streamlit/secrets.toml" in ignored and ".tower" in ignored


@pytest.mark.slow
def test_the_environment_the_dockerfile_describes_serves_the_app(demo_template, tmp_path):
    runtime = dict.fromkeys(("CMD", "HEALTHCHECK", "WORKDIR"), "")
    copies, env = [], {}
    for kind, args in instructions("runtime"):
        if kind == "COPY" and "--from=" not in args:
            copies.append([a for a in shlex.split(args) if not a.startswith("--")][:-1])
        elif kind == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
        elif kind in runtime:
            runtime[kind] = args
    # The build stage installs requirements.txt and nothing else: so do we.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "--quiet", "-r", str(PROJECT_ROOT / "requirements.txt")],
                   check=True, timeout=900)
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    for sources in copies:
        for source in sources:
            src = PROJECT_ROOT / source
            target = app_dir / source
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy)(src, target)
    port = free_port()
    command = [a.replace("8501", str(port)) for a in json.loads(runtime["CMD"])]
    env.update(PATH=f"{venv / 'bin'}:{os.environ['PATH']}", TOWER_DATA_DIR=str(demo_template), HOME=str(tmp_path))
    env["PATH"] = env["PATH"].replace("/opt/venv/bin", str(venv / "bin"))
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=app_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/_stcore/health", 90, log)
        health = shlex.split(runtime["HEALTHCHECK"].split(" CMD ", 1)[1].replace("8501", str(port)))
        assert subprocess.run(health, env=env, timeout=30).returncode == 0
        # The pages run in that environment, without the dev requirements and the test tree.
        script = ("from streamlit.testing.v1 import AppTest;"
                  " at = AppTest.from_file('app.py', default_timeout=120).run();"
                  " assert not at.exception, at.exception; print(at.title[0].value)")
        result = subprocess.run([str(venv / "bin/python"), "-c", script], cwd=app_dir, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "Fleet overview" in result.stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
