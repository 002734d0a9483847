"""`pip install .` gives a working `tower` (issue 13): the wheel built from a copy of the checkout,
installed into a fresh venv, run from a folder outside any checkout, imports the installed package,
and holds services/ only. `python -m services.cli` and `tower` print the same help.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.demo.processes import free_port, port_is_free
from services.settings import PROJECT_ROOT
from tests.support import installed_tower
from tests.support.installed_tower import Venv

pytestmark = pytest.mark.slow  # an isolated wheel build, a venv and a few CLI starts (~5 s of imports each)

RUN_TIMEOUT_S = 120


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Venv
    outside: Path  # a working folder that is no checkout: nothing there can be imported as `services`


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("package")
    source = installed_tower.copy_checkout(root / "checkout")
    wheel = installed_tower.build_wheel(source, root / "dist")
    venv = installed_tower.fresh_venv(root / "venv")
    installed_tower.install(venv, wheel)
    shutil.rmtree(source)  # the installed tower must not need the sources it was built from
    outside = root / "elsewhere"
    outside.mkdir()
    return Installed(wheel, venv, outside)


def tower(installed: Installed, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`tower ARGS` as a user of the venv types it, in a folder outside any checkout."""
    return subprocess.run(["tower", *args], cwd=installed.outside, capture_output=True, text=True,
                          env=env or installed_tower.clean_env(installed.venv), timeout=RUN_TIMEOUT_S)


def the_checkout_tower_yaml(installed: Installed) -> dict[str, str]:
    """The environment of a CI job: its tower.yaml named by TOWER_CONFIG, as examples/github-actions.yml does."""
    config = installed.outside / "tower.yaml"
    if not config.exists():
        shutil.copy(PROJECT_ROOT / "tower.yaml", config)
    return {"TOWER_CONFIG": str(config)}


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def wheel_text(wheel: Path, suffix: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(suffix)]
        return archive.read(name).decode("utf-8")


def test_the_wheel_holds_every_module_of_services_and_nothing_else_of_the_checkout(installed: Installed) -> None:
    names = wheel_names(installed.wheel)
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"services"}
    for folder in ("tests/", "app_pages/", "bench/", "ui/", "docs/", "examples/"):
        assert not [n for n in names if n.startswith(folder)], f"{folder} is in the wheel"
    assert "app.py" not in names
    # The oracle is the checkout's tree: a subpackage missing from the wheel (say, a folder without
    # __init__.py that packages.find skips) fails here, not in a user's first `tower monitor run`.
    modules = {p.relative_to(PROJECT_ROOT).as_posix() for p in (PROJECT_ROOT / "services").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert modules <= set(names), f"missing from the wheel: {sorted(modules - set(names))}"


def test_the_wheel_declares_the_tower_script_and_the_pinned_requirements(installed: Installed) -> None:
    entry_points = wheel_text(installed.wheel, ".dist-info/entry_points.txt")
    assert "[console_scripts]\ntower = services.cli:main" in entry_points
    metadata = wheel_text(installed.wheel, ".dist-info/METADATA")
    requires = [line.removeprefix("Requires-Dist: ") for line in metadata.splitlines()
                if line.startswith("Requires-Dist: ")]
    pinned = [line.strip() for line in (PROJECT_ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
              if line.strip() and not line.lstrip().startswith("#")]
    assert requires == pinned


def test_tower_imports_the_installed_package_not_a_checkout(installed: Installed) -> None:
    assert (installed.venv.bin / "tower").is_file()
    done = subprocess.run([str(installed.venv.python), "-c", "import services; print(services.__file__)"],
                          cwd=installed.outside, env=installed_tower.clean_env(installed.venv),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    imported = Path(done.stdout.strip())
    assert imported.is_relative_to(installed.venv.site_packages), imported
    assert not imported.is_relative_to(PROJECT_ROOT)


def test_tower_help_is_the_tower_command_line(installed: Installed) -> None:
    done = tower(installed, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: tower ")
    for command in ("demo", "promote", "gate", "token", "monitor", "audit"):
        assert command in done.stdout.splitlines()[0], command


def test_tower_token_new_prints_a_token_whose_hash_is_its_scrypt(installed: Installed) -> None:
    done = tower(installed, "token", "new")
    assert done.returncode == 0, done.stderr
    fields = dict(line.split(": ", 1) for line in done.stdout.splitlines()[:2])
    scheme, n, r, p, salt, digest = fields["token_hash"].split("$")
    # Recomputed here with hashlib, not with the tower's own verify_token.
    expected = hashlib.scrypt(fields["token"].encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                              dklen=len(base64.b64decode(digest)), maxmem=256 * 1024 * 1024)
    assert scheme == "scrypt" and len(fields["token"]) >= 40
    assert base64.b64encode(expected).decode() == digest


def test_tower_gate_on_an_unknown_model_exits_2_with_one_line(installed: Installed, demo_template: Path) -> None:
    env = installed_tower.clean_env(installed.venv, TOWER_DATA_DIR=str(demo_template),
                                    **the_checkout_tower_yaml(installed))
    done = tower(installed, "gate", "--model", "nope", "--version", "1", "--to", "Staging", env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: ") and "nope" in done.stderr


def test_tower_gate_passes_a_candidate_from_the_installed_package(installed: Installed, demo_template: Path) -> None:
    # The registry, the warehouse and the stored monitoring results, all read by the installed code.
    env = installed_tower.clean_env(installed.venv, TOWER_DATA_DIR=str(demo_template), TOWER_DEMO="1",
                                    **the_checkout_tower_yaml(installed))
    done = tower(installed, "gate", "--model", "demand-forecast", "--version", "3", "--to", "Staging",
                 "--format", "json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"model": "demand-forecast"' in done.stdout


def test_demo_serve_without_the_app_says_to_run_it_from_a_checkout(installed: Installed, tmp_path: Path) -> None:
    port, oidc_port = free_port(), free_port()
    env = installed_tower.clean_env(installed.venv, TOWER_DATA_DIR=str(tmp_path / "data"), TOWER_DEMO="1")
    done = tower(installed, "demo", "serve", "--port", str(port), "--oidc-port", str(oidc_port), env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.splitlines()) == 1 and "app.py" in done.stderr and "make run" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "demo-secrets.toml").exists(), "refused before anything was written"
    assert port_is_free("127.0.0.1", oidc_port) and port_is_free("localhost", port)


@pytest.mark.parametrize("args", [["--help"], ["gate", "--help"], ["promote", "request", "--help"]],
                         ids=["top", "gate", "promote-request"])
def test_tower_and_python_m_services_cli_print_the_same_help(installed: Installed, args: list[str]) -> None:
    script = tower(installed, *args)
    module = subprocess.run([str(installed.venv.python), "-m", "services.cli", *args], cwd=installed.outside,
                            env=installed_tower.clean_env(installed.venv), capture_output=True, text=True,
                            timeout=RUN_TIMEOUT_S)
    checkout = subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=RUN_TIMEOUT_S)
    assert script.returncode == module.returncode == checkout.returncode == 0, script.stderr + module.stderr
    assert script.stdout.startswith("usage: tower")
    assert script.stdout == module.stdout == checkout.stdout
