"""The layers hold: read every module's imports (statically, so a lazy import inside a function counts too)."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("services", "ui", "app_pages", "app", "bench", "tests")
FEATURES = ("services.governance", "services.monitoring", "services.catalog", "services.auth", "services.demo",
            "services.wiring", "services.cli")
# The bottom layer: configuration, errors and identifiers every other module may use.
BOTTOM = ("services.settings", "services.errors", "services.mapping", "services.versions", "services.secrets_file",
          "services.outages", "services.segments")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import statement of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [a.name for a in node.names], node.lineno


def _within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _violations(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{p.relative_to(ROOT)}:{line} imports {module}" for p in paths for module, _, line in _imports(p)
            if _within(module, *forbidden)]


def test_services_never_import_streamlit_or_the_ui() -> None:
    assert _violations(_modules("services"), ("streamlit", "ui", "app_pages")) == []


def test_the_ui_helpers_never_import_a_page() -> None:
    assert _violations(_modules("ui"), ("app_pages",)) == []


def test_stores_never_import_a_feature() -> None:
    assert _violations(_modules("services/stores"), FEATURES + ("services.catalog",)) == []


def test_the_bottom_layer_imports_only_itself() -> None:
    bottom = [ROOT / (m.replace(".", "/") + ".py") for m in BOTTOM]
    found = [f"{p.relative_to(ROOT)}:{line} imports {module}" for p in bottom for module, _, line in _imports(p)
             if _within(module, *OURS) and not _within(module, *BOTTOM)]
    assert found == []


def test_stats_import_only_stats_numpy_scipy_and_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"numpy", "scipy", "__future__"}
    found = [f"{p.relative_to(ROOT)}:{line} imports {module}" for p in _modules("services/stats")
             for module, _, line in _imports(p)
             if not _within(module, "services.stats") and module.split(".")[0] not in allowed]
    assert found == []


@pytest.mark.parametrize("folder", ["services", "ui", "app_pages", "bench", "tests"])
def test_no_module_imports_another_modules_private_name(folder: str) -> None:
    found = []
    for path in _modules(folder):
        for module, names, line in _imports(path):
            if not _within(module, *OURS):
                continue
            found += [f"{path.relative_to(ROOT)}:{line} takes {module}.{n}" for n in names
                      if n.startswith("_") and not n.startswith("__")]
        found += _private_attributes(path)
    assert found == []


def _private_attributes(path: Path) -> list[str]:
    """``alias._name`` where ``alias`` is one of our modules imported by this file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name.split(".")[0] for a in node.names if _within(a.name, *OURS)}
        elif isinstance(node, ast.ImportFrom) and node.module and _within(node.module, *OURS):
            aliases |= {a.asname or a.name for a in node.names if _is_module(f"{node.module}.{a.name}")}
    return [f"{path.relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
            and node.attr.startswith("_") and not node.attr.startswith("__")]


def _is_module(dotted: str) -> bool:
    base = ROOT / dotted.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def test_the_checks_see_a_violation_when_there_is_one(tmp_path: Path) -> None:
    """The checks are not vacuous: a planted private import and a planted streamlit import are found."""
    planted = ROOT / "services" / "stores" / "_planted_for_test.py"
    planted.write_text("import streamlit\nfrom services.governance.ledger import _x\n", encoding="utf-8")
    try:
        assert _violations([planted], ("streamlit",)) and _violations([planted], FEATURES)
        assert any(n == "_x" for _, names, _ in _imports(planted) for n in names)
    finally:
        planted.unlink()
