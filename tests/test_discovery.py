"""Home Assistant discovery: stable unique ids, a Score that moves, entities only for what runs."""

from __future__ import annotations

import pytest

from edgesight.device.config import load_config
from edgesight.device.mqtt.discovery import ENTITIES, discovery_messages, only_enabled
from edgesight.device.mqtt.topics import Topics
from edgesight.device.smoothing import StateSmoother

PREFIX = "homeassistant/sensor/edgesight_p"
# Renaming a key changes a unique_id, and Home Assistant users then lose the entity's history.
STABLE_KEYS = {"state", "score", "fps", "latency", "infer_latency", "dropped", "drift", "model_version", "deploy_state"}


def messages():
    return discovery_messages(Topics("edgesight/p"), "p", "homeassistant", model="m 1", sw_version="0.1")


def render(template: str, value_json: dict) -> str:
    jinja2 = pytest.importorskip("jinja2", reason="jinja2 (Home Assistant's template engine) is not installed")
    env = jinja2.Environment()
    env.filters["timestamp_utc"] = lambda v: f"iso:{v}"  # HA's filter; its output format is HA's business
    env.filters["tojson"] = lambda v: __import__("json").dumps(v)
    return env.from_string(template).render(value_json=value_json)


def test_existing_unique_ids_are_unchanged():
    by_key = {topic.split("/")[-2]: payload for topic, payload in messages().items()}
    assert STABLE_KEYS <= set(by_key)
    for key in STABLE_KEYS:
        assert by_key[key]["unique_id"] == f"edgesight_p_{key}"


def test_score_comes_from_stats_as_a_percentage_without_the_percent_icon():
    score = messages()[f"{PREFIX}/score/config"]
    assert score["state_topic"] == "edgesight/p/stats"
    assert score["unit_of_measurement"] == "%" and score.get("icon") != "mdi:percent"
    assert render(score["value_template"], {"score": 0.8734}) == "87.3"
    assert render(score["value_template"], {"score": None}) == "None"  # HA's "None": unknown, not an error


def test_label_attributes_are_templated_score_and_since():
    label = messages()[f"{PREFIX}/state/config"]
    assert label["json_attributes_topic"] == "edgesight/p/state"
    rendered = render(
        label["json_attributes_template"], {"label": "cat", "score": 0.9, "since": 1700000000.5, "frame": 3}
    )
    assert rendered == '{"score": 0.9, "since": "iso:1700000000.5", "frame": 3}'


def test_camera_and_model_version_are_entities():
    camera = messages()[f"{PREFIX}/source_state/config"]
    assert render(camera["value_template"], {"source": {"down": True}}) == "down"
    assert render(camera["value_template"], {"source": {"down": False}}) == "ok"
    assert f"{PREFIX}/model_version/config" in messages()


@pytest.mark.parametrize(("present", "drift"), [(None, "absent"), (frozenset(), {}), (frozenset({"drift"}), "config")])
def test_drift_entity_only_while_drift_runs(present, drift):
    pruned = only_enabled(messages(), present)
    topic = f"{PREFIX}/drift/config"
    if drift == "absent":
        assert topic not in pruned  # before the first stats: neither announced nor removed
    elif drift == {}:
        assert pruned[topic] == {}  # empty retained config: Home Assistant removes the entity
    else:
        assert pruned[topic]["unique_id"] == "edgesight_p_drift"
    assert pruned[f"{PREFIX}/fps/config"] == messages()[f"{PREFIX}/fps/config"]


def test_deploy_state_only_with_deploy_enabled():
    assert only_enabled(messages(), frozenset())[f"{PREFIX}/deploy_state/config"] == {}
    kept = only_enabled(messages(), frozenset({"deploy"}))[f"{PREFIX}/deploy_state/config"]
    assert kept["state_topic"] == "edgesight/p/deploy"


def test_below_threshold_label_is_none_not_home_assistants_unknown(tmp_path):
    assert StateSmoother(window=1, threshold=0.5, min_dwell=0).unknown_label == "none"
    path = tmp_path / "c.toml"
    path.write_text('[state]\nunknown_label = "nothing"\n')
    assert load_config(path).state.unknown_label == "nothing"
    assert all(e.icon != "mdi:percent" for e in ENTITIES)
