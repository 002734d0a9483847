"""The resolver from a logged dataset's source to a warehouse table (tower.yaml ``reference_sources``).

The source string is written by whoever can log runs: it must never reach SQL except as an identifier
checked by the mapping's rule and named in the rule's allowlist, or as a bound parameter. Anything else
is "cannot resolve", which the caller turns into the configured fallback.
"""

from __future__ import annotations

import json

import pytest

from services.errors import ConfigError
from services.monitoring.reference_sources import (
    SourceNotResolved,
    parse_reference_sources,
    resolve_source,
    source_uri,
)

RULES = parse_reference_sources([
    {"match": "warehouse://{table}@{snapshot}", "table": "{table}", "snapshot_column": "snapshot",
     "order_column": "row_index", "tables": ["features.credit_risk_training", "features.loan_approval_training"]},
])


def src(uri: str) -> str:
    """How MLflow stores a source: its JSON, with a ``uri``."""
    return json.dumps({"uri": uri, "table": "ignored", "snapshot": "ignored"})


def test_a_matching_source_resolves_to_its_table_snapshot_and_order_column():
    found = resolve_source(RULES, src("warehouse://features.credit_risk_training@2026.09.01"))
    assert (found.table, found.snapshot_column, found.snapshot, found.order_column) == (
        "features.credit_risk_training", "snapshot", "2026.09.01", "row_index")


def test_a_raw_string_source_is_matched_as_it_is():
    assert resolve_source(RULES, "warehouse://features.loan_approval_training@v7").snapshot == "v7"
    assert source_uri("not json at all") == "not json at all"
    assert source_uri(json.dumps({"uri": "x://y"})) == "x://y"


@pytest.mark.parametrize("uri", [
    "warehouse://features.credit_risk_training;DROP TABLE x@2026",  # SQL in the table part
    "warehouse://features.credit_risk_training@2026' OR '1'='1",    # SQL in the snapshot part
    'warehouse://features."credit_risk_training"@2026',             # quoting
    "warehouse://features.credit_risk_training--@2026",
])
def test_hostile_sources_are_not_resolved(uri):
    with pytest.raises(SourceNotResolved, match="cannot resolve"):
        resolve_source(RULES, src(uri))


@pytest.mark.parametrize("uri", [
    "warehouse://features.other_model_training@2026.09.01",   # a table the rule does not allow
    "warehouse://predictions_credit_risk@2026.09.01",          # the live log itself: would hide drift
    "warehouse://FEATURES.CREDIT_RISK_TRAINING@2026.09.01",    # another spelling of an allowed one
])
def test_a_table_outside_the_allowlist_is_refused(uri):
    with pytest.raises(SourceNotResolved, match="not among the tables"):
        resolve_source(RULES, src(uri))


@pytest.mark.parametrize("uri", [
    "WAREHOUSE://features.credit_risk_training@2026.09.01",     # scheme in another case
    "warehouse://features.credit_risk_training@2026.09.01 ",    # trailing space
    " warehouse://features.credit_risk_training@2026.09.01",    # leading space
    "warehouse://features.credit_risk_training@2026.09.01\n",   # trailing newline
    "warehouse://features.credit_risk_training@2026.09.01\x00",  # NUL
    "warehouse://features.credit\u200b_risk_training@2026.09.01",  # zero-width space
    "warehouse://features.credit_risk_trаining@2026.09.01",     # Cyrillic 'а' look-alike
    "warehouse://features.credit_risk_training@２０２６",          # full-width digits
    "warehouse://features.credit_risk_training@" + "9" * 5000,   # huge
    "",
])
def test_odd_spellings_and_control_characters_are_not_resolved(uri):
    with pytest.raises(SourceNotResolved, match="cannot resolve|too long"):
        resolve_source(RULES, src(uri))


def test_a_huge_source_is_refused_before_any_parsing():
    with pytest.raises(SourceNotResolved, match="too long"):
        resolve_source(RULES, "x" * 1_000_000)


def test_the_message_shows_the_source_without_its_control_characters_or_length():
    with pytest.raises(SourceNotResolved) as caught:
        resolve_source(RULES, "warehouse://a@b\x1b[31m" + "y" * 400)
    assert "\x1b" not in caught.value.message and len(caught.value.message) < 400


def test_no_rule_means_no_registry_reference():
    with pytest.raises(SourceNotResolved, match="no reference_sources rule"):
        resolve_source((), src("warehouse://features.credit_risk_training@2026.09.01"))


@pytest.mark.parametrize(("rule", "error"), [
    ({"match": "warehouse://{table}@{snapshot}", "table": "{table}"}, "tables"),        # no allowlist
    ({"match": "warehouse://{table}@{snapshot}", "table": "{table}", "tables": ["a;b"]}, "not a valid table"),
    ({"match": "warehouse://{table}@{evil}", "table": "{table}", "tables": ["a"]}, "placeholder"),
    ({"match": "warehouse://{table}", "table": "{table}", "tables": ["a"], "snapshot_column": "x y"},
     "not a valid"),
    ({"match": "warehouse://{table}@{snapshot}", "table": "{table}", "tables": ["a"]}, "snapshot_column"),
    ({"match": "w://{table}", "table": "{table}", "tables": ["a"], "colour": "red"}, "unknown key"),
    ({"match": "", "table": "{table}", "tables": ["a"]}, "match"),
])
def test_a_bad_rule_is_refused_at_load_time(rule, error):
    with pytest.raises(ConfigError, match=error):
        parse_reference_sources([rule])


def test_the_section_must_be_a_list():
    with pytest.raises(ConfigError, match="list"):
        parse_reference_sources({"match": "x"})
    assert parse_reference_sources(None) == ()


def test_registry_text_is_made_printable_and_short_before_it_is_shown():
    from services.monitoring.reference_sources import printable

    assert printable("train\x1b[2J\x07ing" + "x" * 500, 20) == "train�[2J�ingxxxxxxx…"
    assert printable("plain name") == "plain name"
