"""One results file for every benchmark: each writes its own section of ``bench/RESULTS.md``.

A section sits between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``; writing it again
replaces only that section, so the monitoring and load benchmarks can be rerun independently.
"""

from __future__ import annotations

import re
from pathlib import Path


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def write_section(path: Path, name: str, markdown: str) -> None:
    """Put ``markdown`` as section ``name`` of ``path``: replaced in place, else appended."""
    start, end = _markers(name)
    block = f"{start}\n{markdown.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text, count=1)
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block
    path.write_text(text)


def read_section(path: Path, name: str) -> str | None:
    """The section's Markdown, or None when the file or the section is missing."""
    if not path.exists():
        return None
    start, end = _markers(name)
    found = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), path.read_text(), re.DOTALL)
    return found.group(1).strip() if found else None
