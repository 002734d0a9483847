"""Which data a model's reference is, said on the pages that compare with it: the registry's training
dataset (name, digest, source, version, verification), loudly when it does not match what MLflow logged,
or why the configured reference is used instead."""

from __future__ import annotations

import streamlit as st

from services.mapping import ModelMapping
from services.monitoring.registry_reference import ResolvedReference
from ui.notices import literal


def reference_notice(resolved: ResolvedReference) -> ModelMapping:
    """Say which reference the comparisons use; return the mapping that reads it."""
    if resolved.source is not None:
        text = "Reference: " + literal(resolved.source.text) + "."
        if resolved.mismatch:
            st.error(text + " The numbers below compare with these rows, which are not the dataset the run "
                     "logged: fix the warehouse table or the registry before trusting them.", icon="🚨")
        else:
            st.caption(text)
    elif resolved.fallback is not None:
        st.warning("Reference from the registry unavailable: " + literal(resolved.fallback), icon="⚠️")
    return resolved.mapping
