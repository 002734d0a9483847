"""Hardening: XSRF and CORS stay on, no outside text reaches raw HTML, hostile text renders inert."""

from __future__ import annotations

import ast
import tomllib
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from services.settings import PROJECT_ROOT
from tests.support.app_test import open_page
from ui.notices import literal

HOSTILE = ("**bold** [click](javascript:alert(1)) ![x](data:image/png;base64,AAAA) <img src=x onerror=alert(1)> "
           "<script>alert(2)</script> \u202eevil\u202c zero\u200bwidth `code` # heading | a | b |")


def test_xsrf_and_cors_protection_stay_on_in_the_shipped_config():
    server = tomllib.loads((PROJECT_ROOT / ".streamlit/config.toml").read_text())["server"]
    assert server.get("enableXsrfProtection", True) is True
    assert server.get("enableCORS", True) is True


def _html_sinks(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "unsafe_allow_html":
            found.append(f"unsafe_allow_html at line {node.value.lineno}")
        if isinstance(node, ast.Attribute) and node.attr in ("html", "components") and \
                isinstance(node.value, ast.Name) and node.value.id == "st":
            found.append(f"st.{node.attr} at line {node.lineno}")
    return found


def test_no_page_renders_raw_html():
    files = [PROJECT_ROOT / "app.py", *sorted((PROJECT_ROOT / "app_pages").glob("*.py"))]
    sinks = {f.name: _html_sinks(ast.parse(f.read_text())) for f in files}
    assert not {name: s for name, s in sinks.items() if s}


@pytest.mark.parametrize("text", [HOSTILE, "[a](b)", "<b>x</b>", "javascript:alert(1)", "\\[already](x)"])
def test_literal_leaves_no_markdown_link_or_html_syntax(text):
    escaped = literal(text)
    for i, ch in enumerate(escaped):
        if ch in "[]()<>!*_`#|":
            backslashes = len(escaped[:i]) - len(escaped[:i].rstrip("\\"))
            assert backslashes % 2 == 1, f"unescaped {ch!r} at {i} in {escaped!r}"


def test_hostile_registry_text_is_shown_escaped_on_the_model_page(demo_dir, monkeypatch):
    monkeypatch.setenv("TOWER_DATA_DIR", str(demo_dir))
    client = MlflowClient(tracking_uri=f"sqlite:///{demo_dir / 'mlflow.db'}")
    client.update_registered_model("credit-risk", description=HOSTILE)
    client.set_registered_model_tag("credit-risk", "owner", "<img src=x onerror=alert(1)>")
    at = open_page("app_pages/model.py", model="credit-risk")
    assert not at.exception
    shown = [m.value for m in at.markdown if "evil" in m.value]
    assert shown == [literal(HOSTILE)]
    owner = next(m for m in at.metric if m.label == "Owner")
    assert owner.value == "<img src=x onerror=alert(1)>"  # a metric renders its value as text


def test_the_live_server_does_not_allow_foreign_origins(demo_dir):
    from tests.support.live_app import live_app

    with live_app(demo_dir) as app:
        request = urllib.request.Request(app.url.replace("localhost", "127.0.0.1") + "/_stcore/health",
                                         headers={"Origin": "https://evil.example"})
        with urllib.request.urlopen(request, timeout=10) as response:
            allowed = response.headers.get("Access-Control-Allow-Origin")
    assert allowed not in ("*", "https://evil.example")
