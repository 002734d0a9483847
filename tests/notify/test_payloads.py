"""Payload shapes per format (parsed as strict JSON), and hostile text rendered inert and truncated."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from services.notify.payloads import FORMATS, Notification, render, slack_escape, teams_escape

HOSTILE = ("<!channel> <!here|here> <@U123> <https://evil.example|click here> [click](https://evil.example) "
           "<img src=x onerror=alert(1)> &amp; **bold** @channel \u202eevil\u200b")
NOTE = Notification(key="decision:abc", kind="decision", title="credit-risk v3 promoted to Production",
                    severity="info", model="credit-risk", text="Rita promoted credit-risk v3 to Production.",
                    link="https://tower.example.com/audit?decision=abc",
                    fields=(("Decided by", "Rita"), ("Evidence digest", "d" * 64)), extra={"decision_id": "abc"})


def strict(body: dict[str, Any]) -> dict[str, Any]:
    """The body as a receiver parses it: strict JSON (no NaN/Infinity)."""
    def refuse(token: str) -> None:
        raise ValueError(f"not strict JSON: {token}")
    return json.loads(json.dumps(body), parse_constant=refuse)


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def hostile_note(text: str = HOSTILE, size: int = 1) -> Notification:
    big = text * size
    return Notification(key="alert:k", kind="alert", title=big, severity="warning", model=big, text=big,
                        link="https://tower.example.com/alerts?model=x",
                        fields=tuple((f"field {i}", big) for i in range(15)), extra={"model": big})


def test_the_generic_body_keeps_the_alert_fields_and_adds_the_idempotency_key():
    body = strict(render(NOTE, "generic"))
    assert body["text"] == "[ML Control Tower] Rita promoted credit-risk v3 to Production."
    assert (body["decision_id"], body["kind"], body["severity"], body["model"]) == ("abc", "decision", "info",
                                                                                  "credit-risk")
    assert body["link"] == NOTE.link and body["idempotency_key"] == "decision:abc"


def test_slack_gets_a_fallback_text_a_header_a_section_fields_and_a_link_button():
    body = strict(render(NOTE, "slack"))
    assert "credit-risk v3 promoted to Production" in body["text"]
    header, section, fields, actions = body["blocks"]
    title = "ℹ️ credit-risk v3 promoted to Production"
    assert header == {"type": "header", "text": {"type": "plain_text", "text": title}}
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert [f["type"] for f in fields["fields"]] == ["mrkdwn", "mrkdwn"]
    assert fields["fields"][0]["text"] == "*Decided by*\nRita"
    (button,) = actions["elements"]
    assert actions["type"] == "actions" and button["type"] == "button" and button["url"] == NOTE.link
    assert button["text"]["type"] == "plain_text"


def test_teams_gets_an_adaptive_card_in_the_message_envelope():
    body = strict(render(NOTE, "teams"))
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4" and card["$schema"].startswith("http")
    assert [b["type"] for b in card["body"]] == ["TextBlock", "TextBlock", "FactSet"]
    assert card["body"][2]["facts"][0] == {"title": "Decided by", "value": "Rita"}
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open in ML Control Tower", "url": NOTE.link}]


def test_slack_text_can_neither_mention_nor_link_and_stays_within_slack_limits():
    body = strict(render(hostile_note(size=2000), "slack"))
    for text in strings(body["blocks"]) + [body["text"]]:
        if text.startswith("https://tower.example.com"):
            continue  # our own button URL
        assert "<" not in text and ">" not in text, text[:80]  # no <!channel>, <@U..>, <url|label>
        assert "\u202e" not in text
        assert not re.search(r"(?<!\u2060)@channel", text.replace("@\u2060", ""))  # bare mass mentions defused
        assert not re.search(r"&(?!amp;|lt;|gt;)", text)  # every & is an entity: none cut in half
    header, section, fields, _ = body["blocks"]
    assert len(header["text"]["text"]) <= 150 and len(section["text"]["text"]) <= 3000
    assert len(fields["fields"]) == 10 and all(len(f["text"]) <= 2000 for f in fields["fields"])
    assert len(body["text"]) <= 3000 and len(json.dumps(body)) < 40_000


def test_teams_text_can_form_no_link_or_mention_and_the_card_stays_under_the_size_limit():
    body = strict(render(hostile_note(size=2000), "teams"))
    card = body["attachments"][0]["content"]
    texts = [b["text"] for b in card["body"] if b["type"] == "TextBlock"]
    texts += [v for fact in card["body"][2]["facts"] for v in fact.values()]
    for text in texts:
        assert "](" not in text and "<" not in text  # no Markdown link, no <at> mention, no HTML
        assert "\u202e" not in text
    assert len(card["body"][2]["facts"]) <= 12
    assert len(json.dumps(body).encode()) < 28_000  # Teams refuses bigger messages (HTTP 413)


def test_escaping_is_what_each_receiver_reads_back():
    assert slack_escape("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    assert slack_escape("ping @here now") == "ping @\u2060here now"
    assert teams_escape("[x](http://e)") == "\\[x\\]\u200b(http://e)"
    assert teams_escape("**b** _i_") == "\\*\\*b\\*\\* \\_i\\_"


@pytest.mark.parametrize("fmt", FORMATS)
def test_nan_and_infinity_become_null_and_a_link_that_is_not_http_is_dropped(fmt):
    note = Notification(key="alert:k", kind="alert", title="t", severity="warning", model="m", text="x",
                        link="javascript:alert(1)", extra={"value": float("nan"), "threshold": float("inf")})
    body = strict(render(note, fmt))
    assert "javascript:" not in json.dumps(body)
    if fmt == "generic":
        assert body["value"] is None and body["threshold"] is None and body["link"] is None


def test_a_notification_survives_its_round_trip_through_the_outbox_json():
    again = Notification.from_json(json.loads(json.dumps(NOTE.to_json())))
    assert again == NOTE


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown notification format 'email'"):
        render(NOTE, "email")
