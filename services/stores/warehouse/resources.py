"""What an embedded DuckDB warehouse may use of the machine (tower.yaml ``warehouse``): pure, no I/O.

DuckDB's defaults are 80 % of the RAM for its buffer pool and one thread per core: on a shared
machine a window report over 20M rows then held 3.6 GiB, and a 35-day backfill grew past 6 GiB
(bench/RESULTS.md, "Scale"). With a ``memory_limit`` DuckDB's hash aggregates, sorts and joins spill
to ``temp_directory`` instead of growing, so the same statements finish within the limit.

```yaml
warehouse:
  memory_limit: 1GB      # DuckDB's buffer pool (default 1GB); a size: 512MB, 1.5GB, 2GiB
  threads: 2             # DuckDB's worker threads (default: one per core)
  temp_directory: /var/tmp/tower-duckdb   # where it spills (default: a fresh folder in the system temp dir)
```

The section applies to DuckDB warehouses only; a server database manages its own memory.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.errors import ConfigError

SECTION = "warehouse"  # tower.yaml's top-level key
DEFAULT_MEMORY_LIMIT = "1GB"
_KEYS = frozenset({"memory_limit", "threads", "temp_directory"})
# The sizes DuckDB's memory_limit takes: a number and a decimal or binary unit (its parser's spelling).
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class WarehouseResources:
    """The DuckDB settings of the warehouse engine; None leaves DuckDB's own default."""

    memory_limit: str = DEFAULT_MEMORY_LIMIT
    threads: int | None = None
    temp_directory: str | None = None

    def duckdb_config(self) -> dict[str, Any]:
        """The ``config`` DuckDB opens the database with.

        Without a configured ``temp_directory`` each process gets its own folder that does not exist
        yet: DuckDB creates it on the first spill and removes it when the database closes, and two
        processes reading the same file never share (and delete) each other's spill files. A read-only
        database would otherwise spill beside the warehouse file, which may not be writable. One folder
        per process, not per engine: the engines of a process share DuckDB's database instance, whose
        settings these are (engine.py SETs them on every connection).
        """
        folder = self.temp_directory or os.path.join(tempfile.gettempdir(), f"tower-duckdb-{os.getpid()}")
        config: dict[str, Any] = {"memory_limit": self.memory_limit, "temp_directory": folder}
        if self.threads is not None:
            config["threads"] = self.threads
        return config


def parse_warehouse_resources(raw: Any) -> WarehouseResources:
    """tower.yaml's ``warehouse`` section checked; ConfigError naming the bad key and what it takes."""
    if raw is None:
        return WarehouseResources()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{SECTION} must be a mapping with keys {', '.join(sorted(_KEYS))}.")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{SECTION}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                          f"known keys are {', '.join(sorted(_KEYS))}.")
    memory = raw.get("memory_limit", DEFAULT_MEMORY_LIMIT)
    found = _SIZE.match(str(memory)) if isinstance(memory, str) else None
    if found is None or float(found.group(1)) <= 0:
        raise ConfigError(f"{SECTION}.memory_limit must be a size such as 512MB, 1GB or 2GiB, got {memory!r}.")
    threads = raw.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"{SECTION}.threads must be a whole number of at least 1, got {threads!r}.")
    folder = raw.get("temp_directory")
    if folder is not None and (not isinstance(folder, str) or not folder.strip()):
        raise ConfigError(f"{SECTION}.temp_directory must be a folder path, got {folder!r}.")
    return WarehouseResources(memory_limit=f"{found.group(1)}{found.group(2).upper()}".replace("I", "i"),
                              threads=threads, temp_directory=folder)
