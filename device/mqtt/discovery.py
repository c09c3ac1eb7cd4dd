"""Home Assistant MQTT discovery, generated from one table (:data:`ENTITIES`) of entity descriptions.

A sensor is added by adding one :class:`Entity`; the discovery payloads are built from the table.
An entity whose figures exist only when a feature runs (drift, deploy) names the feature it needs
(``requires``: a stats key, or ``deploy`` for ``[deploy] enabled``); :func:`only_enabled` turns its
config into an empty retained message while the feature is off, which is how Home Assistant
removes an entity, so no sensor sits at ``unknown``.
Unique ids are ``edgesight_<device>_<key>``: keys never change, or users lose their history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .topics import OFFLINE, ONLINE, Topics


@dataclass(frozen=True)
class Entity:
    """One Home Assistant sensor, described as data.

    ``topic`` is "state" or "stats"; ``template`` extracts the value from that JSON payload.
    """

    key: str
    name: str
    topic: str
    template: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    icon: str | None = None
    diagnostic: bool = False
    attributes: bool = False  # expose the JSON payload as attributes (through attributes_template if set)
    attributes_template: str | None = None
    requires: str | None = None  # stats key that must be present (the feature runs) for the entity to exist


ENTITIES: tuple[Entity, ...] = (
    Entity(
        "state",
        "Label",
        "state",
        "{{ value_json.label }}",
        icon="mdi:eye",
        attributes=True,
        attributes_template=(
            "{{ {'score': value_json.score, 'since': value_json.since | timestamp_utc,"
            " 'frame': value_json.frame} | tojson }}"
        ),
    ),
    # From stats (every stats_interval), so it moves while the label holds; 0..1 shown as a percentage.
    Entity(
        "score",
        "Score",
        "stats",
        "{{ (value_json.score * 100) | round(1) if value_json.score is number else none }}",
        unit="%",
        state_class="measurement",
        icon="mdi:gauge",
    ),
    Entity(
        "fps",
        "Frame rate",
        "stats",
        "{{ value_json.fps }}",
        unit="fps",
        state_class="measurement",
        icon="mdi:speedometer",
        diagnostic=True,
    ),
    Entity(
        "latency",
        "Latency",
        "stats",
        "{{ value_json.latency_ms.total.p50 if value_json.latency_ms.total is defined else none }}",
        unit="ms",
        device_class="duration",
        state_class="measurement",
        diagnostic=True,
    ),
    Entity(
        "infer_latency",
        "Inference latency",
        "stats",
        "{{ value_json.latency_ms.infer.p50 if value_json.latency_ms.infer is defined else none }}",
        unit="ms",
        device_class="duration",
        state_class="measurement",
        diagnostic=True,
    ),
    Entity(
        "dropped",
        "Dropped frames",
        "stats",
        "{{ value_json.dropped }}",
        state_class="total_increasing",
        icon="mdi:image-remove",
        diagnostic=True,
    ),
    Entity(
        "drift",
        "Drift score",
        "stats",
        "{{ value_json.drift.score if value_json.drift is defined and value_json.drift.score is not none else none }}",
        state_class="measurement",
        icon="mdi:chart-bell-curve",
        diagnostic=True,
        requires="drift",
    ),
)


ENTITIES += (
    Entity(
        "model_version",
        "Model version",
        "stats",
        "{{ value_json.model.name ~ ' ' ~ value_json.model.version if value_json.model is defined else none }}",
        icon="mdi:tag",
        diagnostic=True,
    ),
    Entity(
        "source_state",
        "Camera",
        "stats",
        "{{ ('down' if value_json.source.down else 'ok') if value_json.source is defined else none }}",
        icon="mdi:cctv",
        attributes=True,
        attributes_template="{{ value_json.source | tojson if value_json.source is defined else '{}' }}",
    ),
    Entity(
        "deploy_state",
        "Deploy state",
        "deploy",
        "{{ value_json.state }}",
        icon="mdi:rocket-launch",
        attributes=True,
        requires="deploy",  # [deploy] enabled; otherwise it would sit at unknown forever
    ),
)


def _ha_id(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in text)


def discovery_messages(
    topics: Topics, device_id: str, discovery_prefix: str, *, model: str = "", sw_version: str = ""
) -> dict[str, dict]:
    """Discovery topic -> config payload for every entity of :data:`ENTITIES`."""
    node = _ha_id(f"edgesight_{device_id}")
    device = {
        "identifiers": [node],
        "name": f"edgesight {device_id}",
        "manufacturer": "edgesight",
        "model": model or "image classifier",
        "sw_version": sw_version,
    }
    messages = {}
    for entity in ENTITIES:
        state_topic = {"state": topics.state, "deploy": topics.deploy}.get(entity.topic, topics.stats)
        payload: dict[str, Any] = {
            "name": entity.name,
            "unique_id": f"{node}_{entity.key}",
            "state_topic": state_topic,
            "value_template": entity.template,
            "availability_topic": topics.availability,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": device,
            "origin": {"name": "edgesight", "sw_version": sw_version},
        }
        optional = {
            "unit_of_measurement": entity.unit,
            "device_class": entity.device_class,
            "state_class": entity.state_class,
            "icon": entity.icon,
            "entity_category": "diagnostic" if entity.diagnostic else None,
            "json_attributes_topic": state_topic if entity.attributes else None,
            "json_attributes_template": entity.attributes_template if entity.attributes else None,
        }
        payload.update({k: v for k, v in optional.items() if v is not None})
        messages[f"{discovery_prefix}/sensor/{node}/{entity.key}/config"] = payload
    return messages


REQUIREMENTS = frozenset(e.requires for e in ENTITIES if e.requires)


def only_enabled(messages: dict[str, dict], present: frozenset[str] | None) -> dict[str, dict]:
    """``messages`` with each entity whose ``requires`` key is not in ``present`` emptied (removed in HA).

    ``present`` is None before the first stats message: such entities are left out entirely then
    (neither announced nor removed), so a restart does not remove and re-add them.
    """
    out: dict[str, dict] = {}
    for topic, payload in messages.items():
        key = topic.rsplit("/", 2)[-2]
        entity = next((e for e in ENTITIES if e.key == key), None)
        if entity is None or entity.requires is None:
            out[topic] = payload
        elif present is not None:
            out[topic] = payload if entity.requires in present else {}
    return out
