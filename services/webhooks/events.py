"""The payload of a verified delivery: parsed and checked, pure.

MLflow 3.17 posts ``{"entity": ..., "action": ..., "timestamp": ..., "data": {...}}``; for
``model_version.created`` the data is ``{name, version, source, run_id, tags, description}``.
This receiver handles that one event. Any other event, a valid MLflow one included, is refused
with 400: ``webhooks register`` subscribes to model_version.created only, so anything else means
the webhook was set up by hand for more than this receiver does, and should be noticed, not
swallowed with a 2xx.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from services.errors import InvalidInput
from services.versions import canonical_version
from services.webhooks.signature import RejectedDelivery

MODEL_VERSION_CREATED = "model_version.created"
HANDLED_EVENTS = (MODEL_VERSION_CREATED,)
MAX_NAME_CHARS = 1000  # a registered model's name; longer is not a name a registry would hold


@dataclass(frozen=True)
class ModelVersionCreated:
    model: str
    version: str  # canonical ("3")
    run_id: str | None

    @property
    def event(self) -> str:
        return MODEL_VERSION_CREATED


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


def event_name(payload: dict[str, Any]) -> str:
    entity, action = payload.get("entity"), payload.get("action")
    if not isinstance(entity, str) or not isinstance(action, str):
        raise RejectedDelivery(400, "The delivery names no event (entity and action).")
    return f"{entity}.{action}"


def parse_event(body: bytes) -> ModelVersionCreated:
    """The event a signed body carries; RejectedDelivery 400 for anything this receiver does not handle."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RejectedDelivery(400, "The delivery's body is not JSON.") from None
    if not isinstance(payload, dict):
        raise RejectedDelivery(400, "The delivery's body is not a JSON object.")
    event = event_name(payload)
    if event not in HANDLED_EVENTS:
        raise RejectedDelivery(400, f"Event {_shown(event)} is not handled here; this receiver handles "
                                    f"{', '.join(HANDLED_EVENTS)} only.")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise RejectedDelivery(400, f"The {event} delivery carries no data.")
    model, version, run_id = data.get("name"), data.get("version"), data.get("run_id")
    if not isinstance(model, str) or not model.strip() or len(model) > MAX_NAME_CHARS:
        raise RejectedDelivery(400, f"The {event} delivery names no usable model: {_shown(model)}.")
    if not isinstance(version, str):
        raise RejectedDelivery(400, f"The {event} delivery names no model version: {_shown(version)}.")
    try:
        version = canonical_version(version)
    except InvalidInput as exc:
        raise RejectedDelivery(400, exc.message) from None
    return ModelVersionCreated(model=model, version=version,
                               run_id=run_id if isinstance(run_id, str) and run_id else None)
