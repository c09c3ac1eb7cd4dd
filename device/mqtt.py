"""Everything MQTT in one place: topic names, payload builders, Home Assistant discovery, the link.

The rest of the daemon publishes through :class:`MqttLink` and never spells a topic. Home
Assistant discovery is generated from one table (:data:`ENTITIES`) of entity descriptions.
The link keeps classification independent of the broker: paho's network thread reconnects
with backoff, QoS 0 results are simply skipped while disconnected, and on every (re)connect
availability, discovery and the current state are published again.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from .config import Config
from .core.errors import ConfigError
from .core.tomlfile import read_secret
from .results import PAYLOAD_VERSION

log = logging.getLogger(__name__)


ONLINE, OFFLINE = "online", "offline"
COMMANDS = ("reload", "snapshot")


@dataclass(frozen=True)
class Topics:
    """The topic names under one prefix (DESIGN.md's MQTT table)."""

    prefix: str

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    @property
    def result(self) -> str:
        return f"{self.prefix}/result"

    @property
    def state(self) -> str:
        return f"{self.prefix}/state"

    @property
    def stats(self) -> str:
        return f"{self.prefix}/stats"

    @property
    def alert(self) -> str:
        """Retained drift alert: ``{"active": true|false, "score", "bound", ...}``."""
        return f"{self.prefix}/alert"

    @property
    def reply(self) -> str:
        """Where command outcomes go (``{"command", "ok", "error"|...}``)."""
        return f"{self.prefix}/reply"

    def cmd(self, verb: str) -> str:
        return f"{self.prefix}/cmd/{verb}"


# -- payloads --------------------------------------------------------------------------------


# -- Home Assistant discovery ----------------------------------------------------------------


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
    attributes: bool = False  # expose the whole JSON payload as attributes (label + score + since)


ENTITIES: tuple[Entity, ...] = (
    Entity("state", "Label", "state", "{{ value_json.label }}", icon="mdi:eye", attributes=True),
    Entity("score", "Score", "state", "{{ value_json.score }}", state_class="measurement", icon="mdi:percent"),
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
        state_topic = topics.state if entity.topic == "state" else topics.stats
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
        }
        payload.update({k: v for k, v in optional.items() if v is not None})
        messages[f"{discovery_prefix}/sensor/{node}/{entity.key}/config"] = payload
    return messages


# -- the link --------------------------------------------------------------------------------


def parse_broker(text: str) -> tuple[str, int | None]:
    """``HOST[:PORT]`` (``[v6]:PORT`` too) -> (host, port or None)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":") or None
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None
    if not host:
        raise ConfigError(f"--broker {text!r}: expected HOST[:PORT]")
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(f"--broker {text!r}: port must be an integer 1..65535")
        return host, int(port)
    return host, None


class MqttLink:
    """One paho client: Last Will, auth, TLS, reconnect with backoff, republish on reconnect.

    ``on_command(verb, payload)`` is called from paho's network thread; keep it short (queue the
    work). ``discovery()`` returns the Home Assistant messages (topic -> payload) to publish on
    each connect; the last state (and alert) are republished too.
    """

    def __init__(
        self,
        config: Config,
        *,
        on_command: Callable[[str, str], None] | None = None,
        discovery: Callable[[], dict[str, dict]] | None = None,
    ) -> None:
        m = config.mqtt
        self.config = config
        for key, value in (("device_id", config.device_id), ("prefix", config.topic_prefix)):
            if not value or any(c in value for c in "+#\0"):
                raise ConfigError(f"[mqtt] {key}: {value!r} cannot be part of an MQTT topic (no '+', '#' or empty)")
        self.topics = Topics(config.topic_prefix)
        self.host, self.port = m.host, m.port
        self.commands = tuple(m.commands)
        self._on_command = on_command
        self._discovery = discovery if m.discovery else None
        self._state: dict | None = None
        self._alert: dict | None = None
        self._lock = threading.Lock()
        self.connects = 0
        self.reconnects = 0
        self.connected = False
        self._stopping = False
        self.last_error = ""
        self.client_id = m.client_id or f"edgesight-{config.device_id}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        self.client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        self.client.reconnect_delay_set(m.reconnect_min, max(m.reconnect_min, m.reconnect_max))
        self.client.max_queued_messages_set(1000)  # QoS 1 state messages queued while offline stay bounded
        self._auth(m)
        self._tls(m)
        self.client.on_connect = self._connected
        self.client.on_disconnect = self._disconnected
        self.client.on_message = self._message
        self.client.on_connect_fail = self._connect_failed

    def _auth(self, m) -> None:
        password = m.password
        if m.password_file:
            password = read_secret(m.password_file, "[mqtt] password_file")
        if m.username:
            self.client.username_pw_set(m.username, password)
        elif password:
            raise ConfigError("[mqtt] password: set username too")

    def _tls(self, m) -> None:
        if not m.tls:
            for key in ("ca_file", "cert_file", "key_file"):
                if m[key]:
                    raise ConfigError(f"[mqtt] {key}: set tls = true to use it")
            return
        for key in ("ca_file", "cert_file", "key_file"):
            if m[key] and not Path(m[key]).is_file():
                raise ConfigError(f"[mqtt] {key}: no such file {m[key]}")
        if bool(m.cert_file) != bool(m.key_file):
            raise ConfigError("[mqtt] cert_file: a client certificate needs key_file too (and vice versa)")
        try:
            self.client.tls_set(
                ca_certs=m.ca_file, certfile=m.cert_file, keyfile=m.key_file, cert_reqs=ssl.CERT_REQUIRED
            )
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(f"[mqtt] tls: cannot load the certificates ({exc})") from None
        if m.tls_insecure:
            self.client.tls_insecure_set(True)

    # -- life ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; a broker that is down now is retried with backoff."""
        log.info(
            "MQTT: connecting to %s:%d as %s (prefix %s)", self.host, self.port, self.client_id, self.topics.prefix
        )
        try:
            self.client.connect_async(self.host, self.port, keepalive=self.config.mqtt.keepalive)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"[mqtt] host: cannot connect to {self.host}:{self.port} ({exc})") from None
        self.client.loop_start()

    def stop(self, timeout: float = 1.0) -> None:
        """Publish ``offline`` (retained), disconnect cleanly, stop the network thread."""
        self._stopping = True
        if self.connected:
            info = self.client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        was_connected = self.connected
        self.client.disconnect()
        if was_connected:
            self.client.loop_stop()
        # else: paho's (daemon) thread may sit in a TCP connect to an unreachable broker for
        # seconds; joining it would break the 2 s stop promise, and the process exits anyway

    # -- publishing ---------------------------------------------------------------------------
    def publish_json(self, topic: str, payload: dict, qos: int = 0, retain: bool = False) -> bool:
        """Publish now if connected; False (nothing queued) otherwise, as a camera stream should."""
        if not self.connected:
            return False
        info = self.client.publish(topic, json.dumps(payload, separators=(",", ":")), qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def publish_result(self, payload: dict) -> bool:
        return self.publish_json(self.topics.result, payload, 0, self.config.mqtt.result_retain)

    def publish_state(self, payload: dict) -> bool:
        """Remember the state (republished on reconnect) and publish it, QoS 1 retained."""
        with self._lock:
            self._state = payload
        return self.publish_json(self.topics.state, payload, qos=1, retain=True)

    def publish_alert(self, payload: dict) -> bool:
        """Remember the alert (republished on reconnect, so it is not lost while offline); QoS 1 retained."""
        with self._lock:
            self._alert = payload
        return self.publish_json(self.topics.alert, payload, qos=1, retain=True)

    def publish_stats(self, payload: dict) -> bool:
        return self.publish_json(self.topics.stats, payload, qos=0, retain=True)

    def republish_discovery(self) -> None:
        """Publish Home Assistant discovery: on each connect, and after a model swap renames the model."""
        if self._discovery is not None and self.connected:
            for topic, payload in self._discovery().items():
                self.client.publish(topic, json.dumps(payload), qos=1, retain=True)

    def reply(self, command: str, ok: bool, **fields: Any) -> bool:
        payload = {"v": PAYLOAD_VERSION, "command": command, "ok": ok, "timestamp": round(time.time(), 3), **fields}
        return self.publish_json(self.topics.reply, payload, qos=1)

    # -- paho callbacks (network thread) ------------------------------------------------------
    def _connected(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            # once at ERROR, then quietly: a wrong password would otherwise fill the journal
            level = logging.DEBUG if self.last_error == str(reason_code) else logging.ERROR
            self.last_error = str(reason_code)
            log.log(
                level,
                "MQTT: broker %s:%d refused the connection: %s (retrying with backoff)",
                self.host,
                self.port,
                reason_code,
            )
            return
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
        self.connected = True
        self.last_error = ""
        log.info(
            "MQTT: connected to %s:%d%s",
            self.host,
            self.port,
            f" (reconnect {self.reconnects})" if self.reconnects else "",
        )
        client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        self.republish_discovery()
        with self._lock:
            state, alert = self._state, self._alert
        if state is not None:
            client.publish(self.topics.state, json.dumps(state, separators=(",", ":")), qos=1, retain=True)
        if alert is not None:
            client.publish(self.topics.alert, json.dumps(alert, separators=(",", ":")), qos=1, retain=True)
        for verb in self.commands:
            client.subscribe(self.topics.cmd(verb), qos=1)

    def _connect_failed(self, client, userdata) -> None:
        # A broker that is down never answers, so _connected is not called: say so once, at
        # WARNING, so a person running by hand knows why nothing arrives; retries stay quiet.
        error = "unreachable"
        level = logging.DEBUG if self.last_error == error else logging.WARNING
        self.last_error = error
        log.log(
            level, "MQTT: broker %s:%d unreachable; classifying anyway, retrying with backoff", self.host, self.port
        )

    def _disconnected(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected
        self.connected = False
        if was and not self._stopping:
            log.warning(
                "MQTT: disconnected from %s:%d (%s); reconnecting with backoff", self.host, self.port, reason_code
            )

    def _message(self, client, userdata, message) -> None:
        verb = message.topic.rsplit("/", 1)[-1]
        if verb not in self.commands or self._on_command is None:
            return
        try:
            text = message.payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.reply(verb, False, error="payload is not UTF-8 text")
            return
        self._on_command(verb, text)
