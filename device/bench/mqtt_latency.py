"""End-to-end latency for ``edgesight bench --mqtt``: frame capture to a real subscriber's callback.

The bench starts its own mosquitto on a free loopback port (so it never touches the user's
broker or its retained topics), subscribes with paho like Home Assistant or Node-RED would, and
runs the pipeline in a child process that publishes every result (:mod:`.publisher`). Each
message's arrival time is matched by frame number to that frame's capture time, so the figure
is what a consumer sees.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..core.errors import EdgesightError
from ..mqtt.topics import Topics
from .children import run_in_child
from .measure import Latency
from .pipeline_run import pipeline_run

log = logging.getLogger(__name__)

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


def find_mosquitto() -> str:
    """The broker binary on PATH or in a usual place; an EdgesightError saying how to install it."""
    found = shutil.which("mosquitto") or next((p for p in MOSQUITTO_PATHS if Path(p).exists()), None)
    if found is None:
        raise EdgesightError("--mqtt needs the mosquitto broker binary: apt-get install mosquitto")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalBroker:
    """A throw-away mosquitto on 127.0.0.1:<free port>, stopped on exit."""

    def __init__(self) -> None:
        self.binary = find_mosquitto()
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="edgesight-bench-mqtt-")
        self._process: subprocess.Popen | None = None

    @property
    def version(self) -> str:
        proc = subprocess.run([self.binary, "-h"], capture_output=True, text=True)
        match = re.search(r"mosquitto version (\S+)", proc.stdout + proc.stderr)
        return f"mosquitto {match.group(1)}" if match else "mosquitto"

    def __enter__(self) -> LocalBroker:
        conf = Path(self._tmp.name) / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        log_file = (Path(self._tmp.name) / "mosquitto.log").open("ab")
        self._process = subprocess.Popen([self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=log_file)
        log_file.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self._process.poll() is not None:
                    break
                time.sleep(0.05)
        self.__exit__()
        raise EdgesightError(f"{self.binary}: the benchmark broker did not start on port {self.port}")

    def __exit__(self, *_: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        self._tmp.cleanup()


class Subscriber:
    """A paho subscriber that stamps every message with its arrival wall time."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.arrivals: list[tuple[float, bytes | bytearray]] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edgesight-bench-sub-{port}")
        self._client.on_connect = lambda client, userdata, flags, rc, props: client.subscribe(topic, qos=0)
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.on_message = lambda client, userdata, message: self.arrivals.append((time.time(), message.payload))
        self._client.connect(host, port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise EdgesightError(f"benchmark subscriber could not subscribe to {topic} on {host}:{port}")

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def frame_number(payload: bytes | bytearray) -> int | None:
    """The ``frame`` number of a result message, or None for anything else on the topic."""
    try:
        message = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    number = message.get("frame") if isinstance(message, dict) else None
    return int(number) if isinstance(number, (int, float)) else None


def measure_mqtt(target: dict[str, Any], source: Path, frames: int) -> dict[str, Any]:
    """Pipeline -> paho publisher -> local mosquitto -> paho subscriber, paced like a camera."""
    prefix = "edgesight/bench"
    topic = Topics(prefix).result
    with LocalBroker() as broker:
        subscriber = Subscriber("127.0.0.1", broker.port, topic)
        try:
            run = run_in_child(
                pipeline_run,
                target=target,
                source=str(source),
                frames=frames,
                realtime=True,
                mqtt={"host": "127.0.0.1", "port": broker.port, "prefix": prefix},
            )
            subscriber.wait_for(run["frames"], timeout=5)
        finally:
            subscriber.close()
        broker_version = broker.version
    wall = run.pop("wall")
    e2e, pipeline, transit = [], [], []
    for arrived, payload in subscriber.arrivals:
        times = wall.get(str(frame_number(payload)))
        if times is None:
            continue
        captured, handed_off = times
        e2e.append((arrived - captured) * 1e3)
        pipeline.append((handed_off - captured) * 1e3)
        transit.append((arrived - handed_off) * 1e3)
    if not e2e:
        raise EdgesightError(f"--mqtt: none of the {run['frames']} published results reached the subscriber")
    return {
        "broker": broker_version,
        "published": run["frames"],
        "received": len(e2e),
        "lost": run["frames"] - len(e2e),
        "dropped_by_source": run["dropped"],
        "fps": run["fps"],
        "realtime": True,
        "e2e": Latency.of(e2e).as_dict(),
        "pipeline": Latency.of(pipeline).as_dict(),
        "transit": Latency.of(transit).as_dict(),
        "peak_rss_mb": run["peak_rss_mb"],
    }
