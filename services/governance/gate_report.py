"""What `tower gate` prints: the policy's gates for a candidate as text, JSON, JUnit XML or a
Markdown summary for a pull-request comment. Pure: it formats an Evidence, it reads nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from services.governance.evidence import FAILED, NO_DATA, PASSED, Evidence, GateResult

FORMATS = ("text", "json", "junit", "markdown")


@dataclass(frozen=True)
class GateLine:
    """One gate as the report shows it: its fact (passed/failed/no_data) and whether it blocks."""

    gate: GateResult
    blocks: bool

    @property
    def verdict(self) -> str:
        if self.gate.status == NO_DATA:
            return "no data (fails)" if self.blocks else "no data (passes by policy)"
        return self.gate.status


def gate_lines(evidence: Evidence) -> tuple[GateLine, ...]:
    blocking = {g.name for g in evidence.failing}
    return tuple(GateLine(g, g.name in blocking) for g in evidence.gates)


def passed(evidence: Evidence) -> bool:
    """Whether a request for this candidate would need no override (exit 0)."""
    return not evidence.failing


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def _headline(evidence: Evidence) -> str:
    failing = [g.name for g in evidence.failing]
    target = f"{evidence.model} v{evidence.version} → {evidence.stage}"
    holder = f"v{evidence.holder.version}" if evidence.holder else "nobody"
    if not failing:
        return f"PASS {target}: every gate of the policy passes (against {holder})."
    return f"FAIL {target}: {len(failing)} gate(s) did not pass (against {holder}): {', '.join(failing)}."


def as_text(evidence: Evidence) -> str:
    lines = [_headline(evidence)]
    for line in gate_lines(evidence):
        lines.append(f"  {'✗' if line.blocks else '✓'} {line.gate.name:<20} {line.verdict:<26} {line.gate.detail}")
    lines += [f"  note: {note}" for note in evidence.notes]
    return "\n".join(lines)


def as_json(evidence: Evidence) -> str:
    body = evidence.as_dict()
    body["passed"] = passed(evidence)
    body["blocking"] = [g.name for g in evidence.failing]
    return json.dumps(body, indent=2, sort_keys=True, default=str)


def as_junit(evidence: Evidence) -> str:
    """One test suite, one test case per gate: CI systems show a blocking gate as a failed test."""
    lines = gate_lines(evidence)
    suite = ET.Element("testsuite", {
        "name": f"tower gate {evidence.model} v{evidence.version} to {evidence.stage}",
        "tests": str(len(lines)), "failures": str(sum(line.blocks for line in lines)), "errors": "0",
        "skipped": str(sum(line.gate.status == NO_DATA and not line.blocks for line in lines)),
        "timestamp": evidence.collected_at})
    for line in lines:
        case = ET.SubElement(suite, "testcase", {"classname": f"tower.gate.{evidence.model}", "name": line.gate.name})
        if line.blocks:
            failure = ET.SubElement(case, "failure", {
                "message": f"{line.gate.name}: {line.verdict}", "type": line.gate.status})
            failure.text = line.gate.detail
        elif line.gate.status == NO_DATA:
            ET.SubElement(case, "skipped", {"message": f"no data; the policy lets it pass: {line.gate.detail}"})
        ET.SubElement(case, "system-out").text = line.gate.detail
    suites = ET.Element("testsuites", {"name": "tower gate"})
    suites.append(suite)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def _cell(text: str) -> str:
    """Table-cell text that cannot break the Markdown table or inject links and HTML."""
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
            .replace("[", "\\[").replace("]", "\\]").replace("\n", " "))


def as_markdown(evidence: Evidence, link: str | None = None) -> str:
    """A pull-request comment: the verdict, each gate with candidate vs holder and the limit."""
    icon = {PASSED: "✅", FAILED: "❌", NO_DATA: "⚠️"}
    holder = f"v{evidence.holder.version}" if evidence.holder else "nobody"
    out = [f"### {'✅' if passed(evidence) else '❌'} tower gate: {_cell(evidence.model)} "
           f"v{_cell(evidence.version)} → {_cell(evidence.stage)}", "",
           _cell(_headline(evidence)), "",
           f"| Gate | Verdict | Candidate v{_cell(evidence.version)} | Holder {holder} | Limit | Detail |",
           "|---|---|---|---|---|---|"]
    for line in gate_lines(evidence):
        g = line.gate
        out.append(f"| `{_cell(g.name)}` | {icon.get(g.status, '')} {_cell(line.verdict)} | {_number(g.candidate)} "
                   f"| {_number(g.holder)} | {_number(g.limit)} | {_cell(g.detail)} |")
    out += ["", f"Evidence window {evidence.window_start} – {evidence.window_end}, collected {evidence.collected_at}."]
    if link:
        out.append(f"Open it in the tower: {link}")
    return "\n".join(out) + "\n"


def render(evidence: Evidence, fmt: str, link: str | None = None) -> str:
    if fmt == "text":
        return as_text(evidence)
    if fmt == "json":
        return as_json(evidence)
    if fmt == "junit":
        return as_junit(evidence)
    if fmt == "markdown":
        return as_markdown(evidence, link)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "GateLine", "as_json", "as_junit", "as_markdown", "as_text", "gate_lines",
           "passed", "render"]
