"""The ``<prefix>/stats`` and ``/api/stats`` payload, assembled from plain parts.

It lives on its own floor so the daemon (which publishes it) and the monitoring pieces (the
status board shows it) both reach it without importing each other: each hands in what it owns.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .classify import Classifier
from .machine import cpu_temperature_c, memory_rss_mb
from .smoothing import State

PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class LinkStatus:
    """The MQTT link as the stats report it (``enabled`` false when MQTT is off on purpose)."""

    enabled: bool = False
    connected: bool = False
    reconnects: int = 0
    counters: Mapping[str, int] = field(default_factory=dict)  # late/dropped states, dropped commands


def stats_payload(
    pipeline: Mapping[str, Any],
    *,
    classifier: Classifier,
    uptime_s: float,
    threads_per_worker: int,
    state: State | None,
    link: LinkStatus,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """One stats message: the pipeline's figures, the model and runtime, machine figures, ``extra``.

    ``timestamp`` is wall time (a reader correlates it with other clocks); ``uptime_s`` is measured
    by the caller on the monotonic clock, so a clock step cannot make it jump.
    """
    return {
        "v": PAYLOAD_VERSION,
        "timestamp": round(time.time(), 3),
        "uptime_s": round(uptime_s, 1),
        **pipeline,
        "threads_per_worker": threads_per_worker,
        "runtime": {"name": classifier.runtime.name, "version": classifier.runtime.version},
        "model": {"name": classifier.name, "version": classifier.version},
        "state": state.label if state else None,
        "score": round(state.score, 4) if state else None,  # moves while the label holds (HA's Score)
        "mqtt": {"enabled": link.enabled, "connected": link.connected, "reconnects": link.reconnects, **link.counters},
        "memory_rss_mb": memory_rss_mb(),
        "cpu_temp_c": cpu_temperature_c(),
        **extra,
    }
