"""`edgesight fleet` over a real mosquitto with real daemons, and the discovery entities it adds."""

from __future__ import annotations

import json

from conftest import run_cli
from test_deploy import deploy, fleet, parts  # noqa: F401 - the fixtures

from edgesight.device.mqtt.discovery import discovery_messages
from edgesight.device.mqtt.topics import Topics


def test_fleet_lists_each_device_with_its_model_and_deploy_state(broker, parts, fleet):  # noqa: F811
    start, sub = fleet
    start("f1", "f2")
    assert deploy(broker, parts["new"], "--device", "f1").returncode == 0
    sub.wait_topic("edgesight/f2/stats", timeout=30)
    result = run_cli("fleet", "--broker", broker.address, "--json")
    assert result.returncode == 0, result
    rows = {r["device"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"f1", "f2"}
    assert rows["f1"]["online"] and rows["f1"]["deploy"] == "active"
    assert rows["f1"]["model"] == "imagenet-v2" and rows["f2"]["version"] == "1.0.0"
    assert rows["f2"]["fps"] is not None and rows["f2"]["last_seen"]
    table = run_cli("fleet", "--broker", broker.address)
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == ["DEVICE", "ONLINE", "MODEL"]
    assert len(table.stdout.splitlines()) == 3


def test_fleet_without_a_broker_is_one_line_and_exit_2():
    result = run_cli("fleet")
    assert result.returncode == 2 and "--broker" in result.stderr and "Traceback" not in result.stderr


def test_discovery_has_model_version_and_deploy_state():
    messages = discovery_messages(Topics("edgesight/p"), "p", "homeassistant", model="m 1")
    deploy_entity = messages["homeassistant/sensor/edgesight_p/deploy_state/config"]
    assert deploy_entity["state_topic"] == "edgesight/p/deploy"
    assert "model_version" in {k.split("/")[-2] for k in messages}
