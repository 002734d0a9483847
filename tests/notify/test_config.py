"""The notifications section and the webhook URLs: defaults, the decision URL's fallback, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.errors import ConfigError
from services.notify.config import ALERTS, DECISIONS, parse_notification_config
from services.wiring import load_settings
from tests.support.webhook import SECRET

ALERT = f"https://hooks.slack.com/services/{SECRET}"
OTHER = f"https://example.webhook.office.com/webhookb2/{SECRET}-2"


def test_decisions_go_to_the_alert_webhook_unless_given_their_own_or_turned_off():
    both = parse_notification_config(None, {"TOWER_ALERT_WEBHOOK_URL": ALERT})
    assert [(d.name, d.url, d.format) for d in both.destinations()] == [(ALERTS, ALERT, "generic"),
                                                                         (DECISIONS, ALERT, "generic")]
    own = parse_notification_config({"format": "teams"}, {"TOWER_ALERT_WEBHOOK_URL": ALERT,
                                                          "TOWER_DECISION_WEBHOOK_URL": OTHER})
    assert [(d.name, d.url, d.format) for d in own.destinations()] == [(ALERTS, ALERT, "teams"),
                                                                        (DECISIONS, OTHER, "teams")]
    off = parse_notification_config(None, {"TOWER_ALERT_WEBHOOK_URL": ALERT, "TOWER_DECISION_WEBHOOK_URL": "off"})
    assert [d.name for d in off.destinations()] == [ALERTS]
    only = parse_notification_config(None, {"TOWER_DECISION_WEBHOOK_URL": OTHER})
    assert [d.name for d in only.destinations()] == [DECISIONS]
    assert parse_notification_config(None, {}).destinations() == []


def test_settings_come_from_the_section_and_the_public_url_from_the_environment_first():
    config = parse_notification_config(
        {"format": "slack", "timeout_s": 2, "retry": {"first_s": 30, "max_s": 600},
         "public_url": "https://yaml.example.com/"},
        {"TOWER_PUBLIC_URL": "https://tower.example.com/"})
    assert (config.format, config.timeout_s, config.retry.first_s, config.retry.max_s, config.public_url) == (
        "slack", 2.0, 30.0, 600.0, "https://tower.example.com")
    assert parse_notification_config({"public_url": "https://yaml.example.com/"}, {}).public_url == \
        "https://yaml.example.com"


@pytest.mark.parametrize(("raw", "message"), [
    ({"format": "email"}, "notifications.format is 'email'"),
    ({"fromat": "slack"}, r"unknown key\(s\) fromat"),
    ({"retry": {"first": 1}}, r"notifications.retry: unknown key\(s\) first"),
    ({"retry": {"first_s": 600, "max_s": 60}}, "max_s must be at least first_s"),
    ({"timeout_s": float("nan")}, "timeout_s must be a number"),
    ({"timeout_s": float("inf")}, "timeout_s must be a number"),
    ({"timeout_s": 0}, "timeout_s must be at least 0.1"),
    ({"timeout_s": True}, "timeout_s must be a number"),
    ({"public_url": "javascript:alert(1)"}, "must be the app's http"),
    ({"public_url": "https://tower.example.com/?x=1"}, "must be the app's http"),
    ([1, 2], "notifications must be a mapping"),
])
def test_bad_notification_settings_are_refused_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_notification_config(raw, {})


@pytest.mark.parametrize("variable", ["TOWER_ALERT_WEBHOOK_URL", "TOWER_DECISION_WEBHOOK_URL"])
def test_a_webhook_url_that_is_not_http_is_refused_without_echoing_it(variable):
    with pytest.raises(ConfigError, match=f"{variable} must be an http") as caught:
        parse_notification_config(None, {variable: f"ftp://host/{SECRET}"})
    assert SECRET not in str(caught.value)


def test_the_configuration_never_prints_a_webhook_token():
    config = parse_notification_config(None, {"TOWER_ALERT_WEBHOOK_URL": ALERT, "TOWER_DECISION_WEBHOOK_URL": OTHER})
    assert SECRET not in repr(config) and all(SECRET not in repr(d) for d in config.destinations())


def test_a_bad_notifications_section_stops_the_app_at_start(tmp_path: Path):
    config = tmp_path / "tower.yaml"
    config.write_text("notifications:\n  format: pager\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="notifications.format is 'pager'"):
        load_settings({"TOWER_CONFIG": str(config), "TOWER_DATA_DIR": str(tmp_path)})
