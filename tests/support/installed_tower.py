"""The tower as `pip install .` gives it: a wheel built from a copy of this checkout, a fresh venv.

A clean venv would download every pinned dependency (several hundred MB) on each run. So the fresh
venv gets one ``.pth`` line naming this interpreter's site-packages, where those pins are installed:
the dependencies come from there, the tower itself only from what pip installed into the fresh venv.
A plain path line runs none of that site-packages' own ``.pth`` files, so an editable install of a
checkout there (``make install``) cannot stand in for the package under test; tests still check where
``services`` was imported from.

Builds use pip's isolated build, as `pip install .` does for a user: the ``[build-system]`` of
pyproject.toml must be enough on its own (its setuptools comes from the package index).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from services.settings import PROJECT_ROOT

BUILD_TIMEOUT_S = 300
# What a checkout holds that is not the project: local stores, caches, build leftovers.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".tower", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".ruff_cache", ".mypy_cache", "test-artifacts", "mlruns",
                                     "mlartifacts")


@dataclass(frozen=True)
class Venv:
    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    @property
    def site_packages(self) -> Path:
        return Path(sysconfig.get_path("purelib", vars={"base": str(self.root), "platbase": str(self.root)}))


def run(command: list[str | Path], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a build or install step; its output is in the assertion message when it fails."""
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S)
    shown = " ".join(map(str, command))
    assert done.returncode == 0, f"{shown} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def copy_checkout(target: Path) -> Path:
    """The checkout's sources without its stores and caches: what a user's `git clone` holds.

    Building in a copy keeps the build's leftovers (build/, *.egg-info) out of the developer's tree.
    """
    shutil.copytree(PROJECT_ROOT, target, ignore=NOT_SOURCES)
    return target


def build_wheel(source: Path, wheel_dir: Path) -> Path:
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", wheel_dir, source], cwd=source)
    (wheel,) = wheel_dir.glob("ml_control_tower-*.whl")
    return wheel


def dependency_dirs() -> list[str]:
    """This interpreter's site-packages, where the pinned dependencies are installed."""
    return sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})


def fresh_venv(root: Path, *, with_pip: bool = False) -> Venv:
    """A new venv of the same Python whose dependencies resolve to this interpreter's site-packages."""
    run([sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), root])
    venv = Venv(root)
    (venv.site_packages / "_tower_test_dependencies.pth").write_text("\n".join(dependency_dirs()) + "\n",
                                                                    encoding="utf-8")
    return venv


def install(venv: Venv, wheel: Path) -> None:
    """The wheel into ``venv`` with this interpreter's pip (``--python``), so the venv needs none of its own."""
    run([sys.executable, "-m", "pip", "--python", venv.python, "install", "--no-deps", "--no-index", wheel])


def clean_env(venv: Venv, **extra: str) -> dict[str, str]:
    """The environment of a user of ``venv``: its bin first on PATH, none of the test run's tower settings
    or import paths (PYTHONPATH would let the checkout stand in for the package)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TOWER_", "MLFLOW_", "WAREHOUSE_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({"PATH": f"{venv.bin}{os.pathsep}{env.get('PATH', '')}", "MLFLOW_DISABLE_TELEMETRY": "true"})
    env.update(extra)
    return env
