"""`make install` puts `tower` in .venv/bin and it follows the checkout: the Makefile's own install
line, run in a fresh venv over a copy of the checkout, gives a `tower` that runs the copy's code as
it is after an edit, and `tower demo serve` finds the copy's app.py. (The Makefile itself is not run:
it would install into the shared venv.)"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from services.settings import PROJECT_ROOT
from tests.support import installed_tower

pytestmark = pytest.mark.slow  # an isolated editable build and three CLI starts


def makefile_install_line() -> str:
    """The recipe line of the install stamp that installs the project itself."""
    lines = re.findall(r"^\t(.*)$", (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M)
    (line,) = [ln for ln in lines if re.search(r"pip install .*-e \.$", ln)]
    return line


def test_make_install_gives_a_tower_that_follows_the_checkout(tmp_path: Path) -> None:
    checkout = installed_tower.copy_checkout(tmp_path / "checkout")
    venv = installed_tower.fresh_venv(tmp_path / "venv")
    command = shlex.split(makefile_install_line())
    assert command[:4] == ["$(BIN)/python", "-m", "pip", "install"]
    # The fresh venv has no pip of its own: this interpreter's pip installs into it (--python).
    installed_tower.run([sys.executable, "-m", "pip", "--python", venv.python, *command[3:]], cwd=checkout)
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    def tower_help() -> str:
        done = subprocess.run(["tower", "--help"], cwd=outside, env=installed_tower.clean_env(venv),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "ML Control Tower command line." in tower_help()
    cli = checkout / "services" / "cli.py"
    cli.write_text(cli.read_text(encoding="utf-8").replace("ML Control Tower command line.", "Edited in place."),
                   encoding="utf-8")
    assert "Edited in place." in tower_help(), "tower runs a stale copy, not the checkout"

    probe = "from services.demo.serve import app_script; print(app_script())"
    done = subprocess.run([str(venv.python), "-c", probe], cwd=outside, env=installed_tower.clean_env(venv),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(checkout / "app.py")
