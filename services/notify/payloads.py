"""One notification, rendered for the receiver's format (pure: no I/O).

Formats:

``generic``  the tower's own JSON: ``text`` (what Slack- and Teams-style receivers display), the
             notification's fields, and ``idempotency_key`` (delivery is at least once: a receiver
             that must act once de-duplicates on it). Alert bodies keep every field they always had.
``slack``    a Slack incoming webhook: ``text`` (the notification fallback) and ``blocks``: a header,
             a section with the text and up to ten fields, and a link button.
``teams``    Teams incoming webhooks and Workflows ("Post to a channel when a webhook request is
             received"): ``{"type": "message", "attachments": [{"contentType":
             "application/vnd.microsoft.card.adaptive", "content": <AdaptiveCard 1.4>}]}``.

Text from users and stores (model names, comments, feature names) is made inert for each format:
Slack reads ``&``, ``<`` and ``>`` as control characters (``<!channel>`` pings everyone,
``<https://x|click>`` is a link), so they are escaped; Teams' TextBlocks read a Markdown subset, so a
``[text](url)`` link is broken apart and emphasis characters are escaped. Everything is truncated to
the receiver's limits (Slack: header 150, section 3000, field 2000 characters; Teams: about 28 KB per
message, so the card's text is kept well under it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("generic", "slack", "teams")
SEVERITIES = ("info", "warning", "critical")
KINDS = ("alert", "decision")

_ELLIPSIS = "…"
_SLACK_HEADER, _SLACK_SECTION, _SLACK_FIELD, _SLACK_FIELDS, _SLACK_TEXT = 150, 3000, 2000, 10, 3000
_SLACK_BUTTON_URL = 3000
_TEAMS_TEXT, _TEAMS_FACT, _TEAMS_FACTS = 4000, 500, 12
_GENERIC_TEXT = 4000
_SEVERITY_MARK = {"info": "ℹ️", "warning": "⚠️", "critical": "🚨"}
# Mass mentions Slack also honours when written bare: a word joiner after "@" keeps them text.
_BARE_MENTION = re.compile(r"@(?=(channel|here|everyone)\b)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Notification:
    """What one notification says, whatever the format.

    ``key`` identifies it for good (the outbox's key and the receiver's idempotency key); ``fields``
    are (label, value) pairs shown as a list; ``extra`` are the machine-readable fields of the
    generic JSON (an alert's episode, a decision's ids).
    """

    key: str
    kind: str
    title: str
    severity: str
    model: str
    text: str
    link: str | None = None
    fields: tuple[tuple[str, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "title": self.title, "severity": self.severity,
                "model": self.model, "text": self.text, "link": self.link,
                "fields": [list(pair) for pair in self.fields], "extra": json_safe(self.extra)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        return cls(key=data["key"], kind=data["kind"], title=data["title"], severity=data["severity"],
                   model=data["model"], text=data["text"], link=data.get("link"),
                   fields=tuple((str(a), str(b)) for a, b in data.get("fields", [])), extra=data.get("extra", {}))


def json_safe(value: Any) -> Any:
    """``value`` with NaN and ±inf replaced by None: strict JSON has no such numbers, and a receiver
    that parses strictly would refuse the whole body."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters; a cut is shown with an ellipsis."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + _ELLIPSIS


def _clean(text: str) -> str:
    """No control characters or bidirectional overrides (they reorder what a reader sees)."""
    return _CONTROL.sub("", str(text))


def slack_escape(text: str) -> str:
    """Slack's three control characters escaped, bare mass mentions defused."""
    escaped = _clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BARE_MENTION.sub("@\u2060", escaped)


def _slack_fit(text: str, limit: int) -> str:
    """Escape, then cut without splitting an entity such as ``&amp;``."""
    escaped = slack_escape(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + _ELLIPSIS


_TEAMS_MARKDOWN = re.compile(r"([\\`*_\[\]#>~|])")


def teams_escape(text: str) -> str:
    """Inert in a TextBlock: Markdown's characters backslash-escaped, ``](`` split (so no link can
    form even where escapes are not honoured) and ``<`` made a look-alike (no ``<at>`` mention)."""
    text = _clean(text).replace("](", "]\u200b(").replace("<", "\u2039").replace(">", "\u203a")
    return _TEAMS_MARKDOWN.sub(r"\\\1", text)


def _is_http(link: str | None) -> bool:
    return bool(link) and str(link).startswith(("https://", "http://"))


def render(notification: Notification, fmt: str) -> dict[str, Any]:
    """The JSON body to POST for ``fmt`` (one of ``FORMATS``)."""
    if fmt == "generic":
        return _generic(notification)
    if fmt == "slack":
        return _slack(notification)
    if fmt == "teams":
        return _teams(notification)
    raise ValueError(f"unknown notification format {fmt!r}")


def _generic(n: Notification) -> dict[str, Any]:
    # Alerts have always been sent as {"text": "[ML Control Tower] ...", episode fields...}: kept as is.
    body: dict[str, Any] = {"text": truncate(f"[ML Control Tower] {_clean(n.text)}", _GENERIC_TEXT)}
    body.update(json_safe(n.extra))
    body.update({"kind": n.kind, "title": truncate(_clean(n.title), 500), "severity": n.severity,
                 "model": n.model, "link": n.link if _is_http(n.link) else None, "idempotency_key": n.key})
    return body


def _slack(n: Notification) -> dict[str, Any]:
    mark = _SEVERITY_MARK.get(n.severity, "")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _slack_fit(f"{mark} {n.title}".strip(),
                                                                             _SLACK_HEADER)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_fit(n.text, _SLACK_SECTION)}},
    ]
    pairs = n.fields[:_SLACK_FIELDS]
    if pairs:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{_slack_fit(label, 100)}*\n{_slack_fit(value, _SLACK_FIELD - 110)}"}
            for label, value in pairs]})
    if _is_http(n.link) and len(str(n.link)) <= _SLACK_BUTTON_URL:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open in ML Control Tower"},
             "url": n.link, "action_id": "open_in_tower"}]})
    fallback = _slack_fit(f"{mark} {n.title}: {n.text}".strip(), _SLACK_TEXT)
    return {"text": fallback, "blocks": blocks}


def _teams(n: Notification) -> dict[str, Any]:
    color = {"critical": "Attention", "warning": "Warning"}.get(n.severity, "Default")
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": truncate(teams_escape(n.title), 300), "weight": "Bolder", "size": "Medium",
         "wrap": True, "color": color},
        {"type": "TextBlock", "text": truncate(teams_escape(n.text), _TEAMS_TEXT), "wrap": True},
    ]
    if n.fields:
        body.append({"type": "FactSet", "facts": [
            {"title": truncate(teams_escape(label), 100), "value": truncate(teams_escape(value), _TEAMS_FACT)}
            for label, value in n.fields[:_TEAMS_FACTS]]})
    card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                            "version": "1.4", "body": body}
    if _is_http(n.link):
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in ML Control Tower", "url": n.link}]
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
