"""bench/RESULTS.md holds every benchmark's section; rewriting one leaves the others as they were."""

from __future__ import annotations

from bench.results_file import read_section, write_section


def test_rewriting_one_section_keeps_the_header_and_the_other_sections(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nintro\n")
    write_section(path, "monitoring", "## Monitoring\n\nfirst run\n")
    write_section(path, "load", "## Load\n\n20 sessions\n")
    write_section(path, "monitoring", "## Monitoring\n\nsecond run\n")

    text = path.read_text()
    assert text.startswith("# Benchmark results\n\nintro\n")
    assert read_section(path, "monitoring") == "## Monitoring\n\nsecond run"
    assert read_section(path, "load") == "## Load\n\n20 sessions"
    assert "first run" not in text
    assert text.index("## Monitoring") < text.index("## Load")  # rewritten in place, not moved to the end


def test_a_missing_file_or_section_reads_as_none_and_writing_creates_it(tmp_path):
    path = tmp_path / "RESULTS.md"
    assert read_section(path, "load") is None
    write_section(path, "load", "figures with $1 and \\1 in them")  # no regex replacement surprises
    assert read_section(path, "load") == "figures with $1 and \\1 in them"
    assert read_section(path, "monitoring") is None
