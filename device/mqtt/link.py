"""The paho-mqtt 2.x link: connect, Last Will, auth, TLS, reconnect, publish, command intake.

The rest of the daemon publishes through :class:`MqttLink` and never spells a topic (topic names:
``topics``; the table of what each carries: docs/mqtt.md). The link keeps classification
independent of the broker: paho's network thread reconnects with backoff, QoS 0 results are
simply skipped while disconnected, and state changes that happen while the broker is unreachable
are kept (a bounded queue) and published in order on reconnect, each marked ``"late": true``,
before the current state, so a subscriber sees every change once, in order.

Commands arrive on paho's thread. The link is their outer gate: retained commands are ignored
(one publish must not re-run at every connect), a token bucket drops floods, payloads over
``MAX_PAYLOAD_BYTES`` or not UTF-8 are refused; what is left is queued for the daemon.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from ..config import Config
from ..core.errors import ConfigError
from ..core.tomlfile import read_secret
from ..results import PAYLOAD_VERSION
from .commands import MAX_PAYLOAD_BYTES, RateLimit
from .discovery import REQUIREMENTS, only_enabled
from .topics import OFFLINE, ONLINE, Topics

log = logging.getLogger(__name__)


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

    ``on_command(verb, payload)`` is called from paho's network thread for a command that passed
    the link's gate (not retained, within the rate limit and size cap, UTF-8); keep it short
    (queue the work). ``discovery()`` returns the Home Assistant messages (topic -> payload) to
    publish on each connect; the last state (and alert) are republished too.
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
        self._features: frozenset[str] | None = None  # stats keys that gate HA entities (drift); None: no stats yet
        self._alert: dict | None = None
        self._lock = threading.Lock()
        # State changes not yet handed to a live connection, oldest first (see publish_state).
        self._backlog: deque[dict] = deque(maxlen=max(1, m.offline_states))
        self._live = False  # True once the backlog of this connection has been flushed
        self._flush_mid: int | None = None
        self.late_published = 0
        self.late_dropped = 0
        self.rate = RateLimit(m.command_burst, m.command_refill_s)
        self.commands_ignored = 0  # retained, oversized or not UTF-8
        self._warned: set[str] = set()
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
        self.client.on_publish = self._published
        # (topic, qos, after-subscribe hook) made again on every connect: a clean session loses them
        self._subscriptions: list[tuple[str, int, Callable[[], None] | None]] = []

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

    def add_subscription(
        self,
        topic: str,
        qos: int,
        callback: Callable[[Any, Any, Any], None],
        on_subscribed: Callable[[], None] | None = None,
    ) -> None:
        """Route ``topic`` (wildcards allowed) to ``callback(client, userdata, message)``, on every connect.

        The subscription is made at each connect (a clean session, or a restarted broker, loses
        it); ``on_subscribed`` then runs on the network thread, e.g. to republish a progress
        message. Messages on ``topic`` never reach the command gate.
        """
        self.client.message_callback_add(topic, callback)
        with self._lock:
            self._subscriptions.append((topic, qos, on_subscribed))
        if self.connected:
            self.client.subscribe(topic, qos=qos)
            if on_subscribed is not None:
                on_subscribed()

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
        """Remember the state and publish it, QoS 1 retained; offline, keep it for the reconnect.

        While the link is not live (disconnected, or reconnected but the backlog not yet flushed)
        the change joins a bounded queue; when full, the oldest change is dropped and counted.
        Returns True when it went to the broker now.
        """
        with self._lock:
            self._state = payload
            if self._live and self.connected:
                return self.publish_json(self.topics.state, payload, qos=1, retain=True)
            if len(self._backlog) == self._backlog.maxlen:
                self.late_dropped += 1
                self._warn_once("backlog", "MQTT: offline state queue full; dropping the oldest state changes")
            self._backlog.append(payload)
            return False

    def counters(self) -> dict[str, int]:
        """For the ``mqtt`` block of stats: late states sent and dropped, commands dropped and ignored."""
        return {
            "late_published": self.late_published,
            "late_dropped": self.late_dropped,
            "commands_dropped": self.rate.dropped,
            "commands_ignored": self.commands_ignored,
        }

    def publish_alert(self, payload: dict) -> bool:
        """Remember the alert (republished on reconnect, so it is not lost while offline); QoS 1 retained."""
        with self._lock:
            self._alert = payload
        return self.publish_json(self.topics.alert, payload, qos=1, retain=True)

    def publish_stats(self, payload: dict) -> bool:
        """Publish stats (retained); when a gated feature (drift) starts or stops, redo discovery."""
        features = frozenset(k for k in REQUIREMENTS if k in payload)
        if self.config.deploy.enabled:
            features |= {"deploy"}
        sent = self.publish_json(self.topics.stats, payload, qos=0, retain=True)
        if features != self._features and self.connected:
            self._features = features
            self.republish_discovery()
        return sent

    def republish_discovery(self) -> None:
        """Publish Home Assistant discovery: on each connect, after a model swap, when a feature toggles.

        An entity of a feature that is off gets an empty retained config: Home Assistant removes it.
        """
        if self._discovery is not None and self.connected:
            for topic, payload in only_enabled(self._discovery(), self._features).items():
                self.client.publish(topic, json.dumps(payload) if payload else "", qos=1, retain=True)

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
        info = client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        # The state backlog goes out when the broker acknowledges this message: paho resends the
        # messages left unacknowledged by the lost connection right after this callback returns,
        # and those are older than anything in the backlog.
        with self._lock:
            self._live = False
            self._flush_mid = info.mid
        self.republish_discovery()
        with self._lock:
            alert = self._alert
        if alert is not None:
            client.publish(self.topics.alert, json.dumps(alert, separators=(",", ":")), qos=1, retain=True)
        for verb in self.commands:
            client.subscribe(self.topics.cmd(verb), qos=1)
        with self._lock:
            extra = list(self._subscriptions)
        for topic, qos, _hook in extra:
            client.subscribe(topic, qos=qos)
        for _topic, _qos, hook in extra:
            if hook is not None:
                hook()

    def _published(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if mid != self._flush_mid or not self.connected:
                return
            self._flush_mid = None
            self._flush_backlog(client)
            self._live = True

    def _flush_backlog(self, client) -> None:
        """Offline changes in order, each ``"late": true`` (its ``since`` is when it happened); then the state.

        The last one is the current state and is the one retained; with no backlog the current
        state is republished retained (a restarted broker may have lost it). Called with the lock held.
        """
        late = list(self._backlog)
        self._backlog.clear()
        for number, payload in enumerate(late, 1):
            last = number == len(late)
            client.publish(
                self.topics.state, json.dumps({**payload, "late": True}, separators=(",", ":")), qos=1, retain=last
            )
        if late:
            self.late_published += len(late)
            log.info("MQTT: published %d state change(s) made while offline", len(late))
        elif self._state is not None:
            client.publish(self.topics.state, json.dumps(self._state, separators=(",", ":")), qos=1, retain=True)

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
        with self._lock:
            self.connected = False
            self._live = False
        if was and not self._stopping:
            log.warning(
                "MQTT: disconnected from %s:%d (%s); reconnecting with backoff", self.host, self.port, reason_code
            )

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        """WARNING the first time, DEBUG after: a flood must not flood the journal too."""
        log.log(logging.DEBUG if key in self._warned else logging.WARNING, message, *args)
        self._warned.add(key)

    def _message(self, client, userdata, message) -> None:
        verb = message.topic.rsplit("/", 1)[-1]
        if verb not in self.commands or self._on_command is None or message.topic != self.topics.cmd(verb):
            return
        if message.retain:
            # a retained command would run again at every connect (and after every restart)
            self.commands_ignored += 1
            self._warn_once(
                "retain:" + verb,
                "MQTT: ignoring a retained message on %s (commands must not be retained; clear it with an "
                "empty retained publish)",
                message.topic,
            )
            return
        if not self.rate.allow():
            self._warn_once("rate", "MQTT: commands arrive faster than the rate limit; dropping the excess")
            return
        if len(message.payload) > MAX_PAYLOAD_BYTES:
            self.commands_ignored += 1
            log.warning(
                "MQTT: cmd/%s payload of %d bytes refused (limit %d)", verb, len(message.payload), MAX_PAYLOAD_BYTES
            )
            self.reply(verb, False, error=f"refused: payload larger than {MAX_PAYLOAD_BYTES} bytes")
            return
        try:
            text = message.payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.commands_ignored += 1
            self.reply(verb, False, error="refused: payload is not UTF-8 text")
            return
        self._on_command(verb, text)
