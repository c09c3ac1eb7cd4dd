"""Helpers for the daemon tests: a real paho subscriber and the daemon as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> dict:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """A real paho client subscribed to ``topic`` (default: everything) that records messages."""

    port: int
    topic: str = "#"
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "test subscriber could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append(Message(msg.topic, msg.payload, bool(msg.retain), msg.qos))

    def on(self, suffix: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(self, predicate: Callable[[list[Message]], object], timeout: float = 30.0, what: str = "") -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                value = predicate(list(self.messages))
            if value:
                return value
            time.sleep(0.05)
        topics = sorted({m.topic for m in self.messages})
        raise AssertionError(f"timed out waiting for {what or predicate}; topics seen: {topics}")

    def wait_topic(
        self, suffix: str, check: Callable[[Message], bool] = lambda m: True, timeout: float = 30.0
    ) -> Message:
        def find(messages):
            return next((m for m in reversed(messages) if m.topic.endswith(suffix) and check(m)), None)

        return self.wait_for(find, timeout, what=suffix)  # type: ignore[return-value]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained(port: int, topic: str, timeout: float = 5.0) -> Message | None:
    """The retained message on ``topic`` as a fresh subscriber sees it (None if none within ``timeout``).

    Each attempt is a new subscription, because only those get the retain flag: a message
    published while a client is already subscribed arrives with retain = 0.
    """
    deadline = time.monotonic() + timeout
    while True:
        sub = Subscriber(port, topic)
        try:
            return sub.wait_topic(topic, lambda m: m.retain, timeout=min(1.0, max(0.1, deadline - time.monotonic())))
        except AssertionError:
            if time.monotonic() >= deadline:
                return None
        finally:
            sub.close()


class DaemonProcess:
    """``python -m edgesight.device.cli run ...`` as a user runs it, logs kept in a file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgesight.device.cli", "-v", "run", *map(str, args)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 2.0) -> int:
        """SIGTERM and wait at most ``timeout`` seconds: the service contract."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon did not stop within {timeout} s of SIGTERM:\n{self.log()[-3000:]}") from None

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
