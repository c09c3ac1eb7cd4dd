"""The daemon's own MQTT link and ``result`` payload, used by the pipeline child of ``--mqtt``.

Kept apart from :mod:`.mqtt_latency` (the broker and the subscriber in the bench process) so the
child that publishes imports only what it publishes with.
"""

from __future__ import annotations

import time

from ..config import defaults
from ..core.errors import EdgesightError
from ..mqtt.link import MqttLink
from ..results import FrameResult, result_payload


class ResultPublisher:
    """Publishes each result the way the daemon does, so the bench measures what ships."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        config = defaults()
        config.override(
            {
                ("mqtt", "host"): host,
                ("mqtt", "port"): port,
                ("mqtt", "prefix"): prefix,
                ("mqtt", "device_id"): "bench",
                ("mqtt", "discovery"): False,
            },
            where="bench",
        )
        self.link = MqttLink(config)
        self.link.start()
        deadline = time.monotonic() + 10
        while not self.link.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.link.connected:
            self.link.stop()
            raise EdgesightError(f"benchmark publisher could not connect to {host}:{port}")

    def publish(self, result: FrameResult) -> None:
        self.link.publish_result(result_payload(result))

    def close(self) -> None:
        """``offline`` at QoS 1 goes out after the queued results, so waiting for it flushes them."""
        self.link.stop(timeout=5)
