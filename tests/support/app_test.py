"""Pages through Streamlit's AppTest on the seeded demo: open a page, read what it says, and give
the oracle its own copy of the warehouse file."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

from streamlit.testing.v1 import AppTest

from services.settings import PROJECT_ROOT

DEMO_MODELS = {"credit-risk", "loan-approval", "fraud-detection", "demand-forecast"}


def open_page(page: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.run()
    if page:
        at.switch_page(page)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


@functools.cache
def oracle_copy(path: str) -> str:
    """A private copy of the warehouse file for the oracle: DuckDB refuses a second in-process
    connection with another configuration than the app's, and the oracle must not share the app's.

    Pass ``str(warehouse_file(settings))``, not WAREHOUSE_URL: under the production backends that
    is a PostgreSQL URL and the rows come from the DuckDB file it was loaded from."""
    target = Path(tempfile.mkdtemp()) / "oracle.duckdb"
    shutil.copy(path, target)
    return str(target)


def texts(at: AppTest, kinds: tuple[str, ...] = ("error", "warning", "info", "markdown", "caption")) -> str:
    """What the page says in words, with the markdown escapes that make registry text inert removed."""
    return " ".join(str(e.value) for kind in kinds for e in getattr(at, kind)).replace("\\", "")


# An [auth] section that passes the app's checks; the provider itself is not contacted.
GOOD_AUTH = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "a-long-random-cookie-secret-0123456789",
    "client_id": "tower",
    "client_secret": "a-real-looking-client-secret",
    "server_metadata_url": "http://127.0.0.1:9400/.well-known/openid-configuration",
}
