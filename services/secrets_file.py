"""The secrets file (``.streamlit/secrets.toml``) read without Streamlit, for the CLI and services.

``TOWER_SECRETS_FILE`` overrides the path. Only the sections the services need are read:

```toml
[service_accounts]            # account name -> salted token hash (python -m services.cli token new)
ci-bot = "scrypt$16384$8$1$...$..."
```

A missing file is no secrets; an unreadable or invalid one is a ConfigError naming the file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.errors import ConfigError
from services.settings import PROJECT_ROOT

SECRETS_ENV = "TOWER_SECRETS_FILE"
DEFAULT_PATH = PROJECT_ROOT / ".streamlit" / "secrets.toml"


def secrets_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    override = env.get(SECRETS_ENV, "").strip()
    return Path(override) if override else DEFAULT_PATH


def load_secrets(path: Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The secrets file as a dict ({} when there is none)."""
    target = secrets_path(environ) if path is None else path
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"Cannot read the secrets file {target}: {exc.strerror}.",
                          f"Fix its permissions or point {SECRETS_ENV} elsewhere.") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The secrets file {target} is not valid TOML: {exc}.") from exc


def service_account_hashes(path: Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``[service_accounts]`` section: account name -> stored token hash."""
    section = load_secrets(path, environ).get("service_accounts") or {}
    if not isinstance(section, dict) or not all(isinstance(v, str) for v in section.values()):
        raise ConfigError(f"[service_accounts] in {secrets_path(environ) if path is None else path} must map "
                          "account names to token hashes (strings).")
    return {str(k): v for k, v in section.items()}
