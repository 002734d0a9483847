"""The image's `tower` (Dockerfile, build stage), checked without a Docker engine: the files the stage
copies to /app are enough to install the package, and the installed command runs the services/ in
/app, so it finds /app/tower.yaml as the app does (PROJECT_ROOT is /app, not site-packages)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.settings import PROJECT_ROOT
from tests.support import installed_tower

pytestmark = pytest.mark.slow  # an isolated editable build and a CLI start

DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")


def build_stage() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the build stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    body = next(s for s in re.split(r"^FROM ", text, flags=re.M)[1:] if s.split("\n", 1)[0].endswith("AS build"))
    lines = [ln.strip() for ln in body.split("\n")[1:] if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(" ", 1)[0], ln.split(" ", 1)[1]) for ln in lines]


def test_the_images_tower_runs_the_services_the_app_runs(tmp_path: Path) -> None:
    app = tmp_path / "app"  # stands for the image's /app
    steps = build_stage()
    for kind, args in steps:
        if kind != "COPY":
            continue
        *sources, target = shlex.split(args)
        if not target.startswith("/app"):
            continue
        destination = app / target.removeprefix("/app").strip("/")
        for source in sources:
            if (PROJECT_ROOT / source).is_dir():
                shutil.copytree(PROJECT_ROOT / source, destination, ignore=installed_tower.NOT_SOURCES)
            else:
                destination.mkdir(parents=True, exist_ok=True)
                shutil.copy(PROJECT_ROOT / source, destination / source)
    (install,) = [args for kind, args in steps if kind == "RUN" and " -e /app" in args]
    venv = installed_tower.fresh_venv(tmp_path / "opt-venv")
    command = shlex.split(install.replace("/opt/venv/bin/pip", "PIP").replace("/app", str(app)))
    assert command[0] == "PIP"
    installed_tower.run([sys.executable, "-m", "pip", "--python", venv.python, *command[1:]])
    shutil.copy(PROJECT_ROOT / "tower.yaml", app / "tower.yaml")  # the runtime stage's COPY of it

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    probe = "import services.settings as s; print(s.PROJECT_ROOT); print(s.load_settings({}).config_path)"
    done = subprocess.run([str(venv.python), "-c", probe], cwd=outside, env=installed_tower.clean_env(venv),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(app), str(app / "tower.yaml")]
    helped = subprocess.run(["tower", "--help"], cwd=outside, env=installed_tower.clean_env(venv),
                            capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: tower"), helped.stderr
