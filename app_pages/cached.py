"""Cached access to the services for the pages.

Clients and engines are shared resources (one per URL); query results are cached for a minute,
keyed on the settings they were read with. Streamlit never caches an exception, so a page
recovers on its own when a backend returns. Nothing here depends on who is signed in; a cached
call that ever does must take the role as an argument (DESIGN.md §2).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from services import warehouse
from services.mapping import ModelMapping
from services.registry import Lineage, ModelSummary, Registry, VersionInfo
from services.settings import Settings

TTL_S = 60


@st.cache_resource(show_spinner=False)
def _registry(uri: str, timeout_s: float, retries: int) -> Registry:
    return Registry(uri, timeout_s=timeout_s, max_retries=retries)


@st.cache_resource(show_spinner=False)
def _engine(url: str, timeout_s: float) -> Engine:
    return warehouse.make_engine(url, connect_timeout_s=timeout_s)


def registry(s: Settings) -> Registry:
    return _registry(s.mlflow_tracking_uri, s.mlflow_timeout_s, s.mlflow_max_retries)


def engine(s: Settings) -> Engine:
    return _engine(s.warehouse_url, s.warehouse_timeout_s)


@st.cache_data(ttl=TTL_S, max_entries=16, show_spinner=False)
def list_models(s: Settings) -> list[ModelSummary]:
    return registry(s).list_models()


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False)
def get_model(s: Settings, name: str) -> ModelSummary:
    return registry(s).get_model(name)


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False)
def list_versions(s: Settings, name: str) -> list[VersionInfo]:
    return registry(s).list_versions(name)


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False)
def stage_holders(s: Settings, name: str) -> dict[str, VersionInfo | None]:
    return registry(s).stage_holders(name, s.stage_aliases, legacy=s.use_legacy_stages)


@st.cache_data(ttl=TTL_S, max_entries=256, show_spinner=False)
def lineage(s: Settings, name: str, version: str) -> Lineage:
    return registry(s).lineage(name, version)


@st.cache_data(ttl=TTL_S, max_entries=256, show_spinner=False)
def window_summary(s: Settings, mapping: ModelMapping, start: datetime, end: datetime) -> warehouse.WindowSummary:
    return warehouse.window_summary(engine(s), mapping, start, end)


@st.cache_data(ttl=TTL_S, max_entries=256, show_spinner=False)
def traffic_by_day(s: Settings, mapping: ModelMapping, start: datetime, end: datetime) -> pd.DataFrame:
    return warehouse.traffic_by_day(engine(s), mapping, start, end)


@st.cache_data(ttl=TTL_S, max_entries=128, show_spinner=False)
def latency_by_day(s: Settings, mapping: ModelMapping, start: datetime, end: datetime) -> pd.DataFrame:
    return warehouse.latency_by_day(engine(s), mapping, start, end)


@st.cache_data(ttl=TTL_S, max_entries=128, show_spinner=False)
def latency_by_version(s: Settings, mapping: ModelMapping, start: datetime, end: datetime) -> pd.DataFrame:
    return warehouse.latency_by_version(engine(s), mapping, start, end)
