"""The status board: what the HTTP server shows, kept up to date by one cheap frame-result consumer.

The pipeline thread only stores a reference to the newest result and bumps counters (O(1), no
encoding, no allocation beyond a tuple); everything expensive -- JPEG encoding, drawing the
label, JSON, the Prometheus exposition -- happens in the HTTP threads on demand, from the
newest result, so a slow browser or a scraper can never slow inference.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import cv2
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from ..core.preprocess import to_bgr
from ..results import result_payload

log = logging.getLogger(__name__)
disable_created_metrics()  # *_created series are noise for a single long-running daemon

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
HISTORY_POINTS = 120  # sparkline length
HISTORY_EVERY_S = 1.0


def _num(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _find(stats: Mapping[str, Any], *keys: str) -> Any:
    """First present key, looking one level into nested dicts too (``{"mqtt": {"reconnects": 2}}``)."""
    for key in keys:
        if key in stats:
            return stats[key]
    for value in stats.values():
        if isinstance(value, Mapping):
            for key in keys:
                if key in value:
                    return value[key]
    return None


def _total(value: Any) -> float | None:
    """A count that may be given per stage/queue as a dict: sum it."""
    if isinstance(value, Mapping):
        parts = [_num(v) for v in value.values()]
        return sum(p for p in parts if p is not None)
    return _num(value)


class StatusBoard:
    """Latest frame, rolling figures and Prometheus metrics for the status page and API.

    ``extra_stats`` is called at request time (never per frame) for the daemon's own figures:
    pipeline stats (dropped frames, queue depths), MQTT reconnects, drift and capture state.
    """

    def __init__(
        self,
        extra_stats: Callable[[], Mapping[str, Any]] | None = None,
        *,
        state: Callable[[], Mapping[str, Any] | None] | None = None,
        stale_after_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.extra_stats = extra_stats or (lambda: {})
        self.state = state or (lambda: None)  # the daemon's smoothed state payload, if any
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.started = clock()
        self.frames = 0
        self._latest: Any = None
        self._latest_at: float | None = None
        self._arrivals: deque[float] = deque(maxlen=240)
        self._history: deque[dict[str, float]] = deque(maxlen=HISTORY_POINTS)
        self._next_history = 0.0
        self._jpeg_cache: tuple[int, bytes] | None = None
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self.model: dict[str, Any] = {}
        self.runtime: dict[str, Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self._frames_metric = Counter("edgesight_frames", "Frames classified", registry=self.registry)
        self._latency = Histogram(
            "edgesight_stage_latency_seconds",
            "Per-stage latency of classified frames",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._stage_children: dict[str, Any] = {}
        self.registry.register(_DaemonCollector(self))

    # -- configuration (daemon start and cmd/reload) -------------------------------------------
    def set_model(self, spec: Any = None, runtime: Any = None) -> None:
        """Record the model (a ModelSpec) and runtime shown on the page and in /metrics."""
        if spec is not None:
            manifest = getattr(spec, "manifest", {}) or {}
            self.model = {
                "name": getattr(spec, "name", ""),
                "version": getattr(spec, "version", ""),
                "path": str(getattr(spec, "model_path", "")),
                "labels": len(getattr(spec, "labels", ())),
                "architecture": manifest.get("architecture"),
                "metrics": manifest.get("metrics"),
                "created": manifest.get("created"),
            }
        if runtime is not None:
            self.runtime = {"name": getattr(runtime, "name", str(runtime)), "version": getattr(runtime, "version", "")}

    # -- the consumer (pipeline thread) -------------------------------------------------------------
    def __call__(self, result: Any) -> None:
        now = self.clock()
        latency = getattr(result, "latency_ms", None) or result.classification.latency_ms
        with self._lock:
            self._latest = result
            self._latest_at = now
            self.frames += 1
            self._arrivals.append(now)
            add_history = now >= self._next_history
            if add_history:
                self._next_history = now + HISTORY_EVERY_S
        self._frames_metric.inc()
        for stage, ms in latency.items():
            child = self._stage_children.get(stage)
            if child is None:
                child = self._stage_children[stage] = self._latency.labels(stage=stage)
            child.observe(float(ms) / 1e3)
        if add_history:
            total = latency.get("total")
            if total is None:
                total = sum(v for k, v in latency.items() if k != "total")
            point = {
                "t": round(now - self.started, 2),
                "fps": round(self.fps(), 2),
                "latency_ms": round(float(total), 2),
            }
            with self._lock:
                self._history.append(point)

    # -- reads (HTTP threads) ------------------------------------------------------------------------
    def latest(self) -> Any:
        return self._latest

    def healthy(self) -> bool:
        """True while frames are being classified: one arrived within ``stale_after_s``."""
        at = self._latest_at
        return at is not None and self.clock() - at <= self.stale_after_s

    def fps(self, window_s: float = 5.0) -> float:
        """Frames a second over the last ``window_s`` (0 when frames stopped)."""
        now = self.clock()
        with self._lock:
            recent = [t for t in self._arrivals if now - t <= window_s]
        if len(recent) < 2:
            return 0.0
        span = max(recent[-1] - recent[0], 1e-6)
        if now - recent[-1] > window_s / 2:
            return 0.0
        return (len(recent) - 1) / span

    def uptime_s(self) -> float:
        return self.clock() - self.started

    def latest_json(self) -> dict[str, Any] | None:
        """The last result in the MQTT ``result`` payload's shape, plus the smoothed state if known."""
        result = self._latest
        if result is None:
            return None
        payload = result_payload(result)
        if not payload.get("model") and self.model:
            payload["model"] = {"name": self.model.get("name"), "version": self.model.get("version")}
        state = self.state()
        if state is not None:
            payload["state"] = dict(state)
        payload["age_s"] = round(self.clock() - (self._latest_at or self.clock()), 3)
        return payload

    def stats(self) -> dict[str, Any]:
        """Everything the page shows: model, runtime, fps, latency history, daemon figures."""
        try:
            extra = dict(self.extra_stats() or {})
        except Exception:  # a stats provider bug must not break the page
            log.exception("stats provider failed")
            extra = {}
        with self._lock:
            history = list(self._history)
        own = {
            "v": 1,
            "healthy": self.healthy(),
            "frames": self.frames,
            "fps": round(self.fps(), 2),
            "uptime_s": round(self.uptime_s(), 1),
            "model": self.model or extra.get("model", {}),
            "runtime": self.runtime or extra.get("runtime", {}),
            "history": history,
        }
        return {**extra, **own}

    def snapshot_jpeg(self, quality: int = 80, max_width: int = 960) -> tuple[int, bytes] | None:
        """(frame number, JPEG) of the newest frame with its label drawn; one encode per new frame."""
        result = self._latest
        if result is None:
            return None
        number = int(result.frame.number)
        cached = self._jpeg_cache
        if cached is not None and cached[0] == number:
            return cached
        with self._encode_lock:  # several viewers share one encode
            cached = self._jpeg_cache
            if cached is not None and cached[0] == number:
                return cached
            image = annotate(result, max_width)
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                return None
            self._jpeg_cache = (number, data.tobytes())
            return self._jpeg_cache


def annotate(result: Any, max_width: int = 960) -> np.ndarray:
    """A BGR copy of the frame (scaled down to ``max_width``) with the top label and score drawn."""
    frame = result.frame
    image = to_bgr(frame.image, getattr(frame, "order", "BGR"))
    height, width = image.shape[:2]
    if width > max_width:
        image = cv2.resize(image, (max_width, round(height * max_width / width)), interpolation=cv2.INTER_AREA)
    else:
        image = image.copy()
    best = result.classification.top[0]
    text = f"{best.label} {best.score:.2f}"
    scale = max(0.5, image.shape[1] / 900)
    thickness = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(image, (0, 0), (tw + 16, th + base + 16), (0, 0, 0), -1)
    cv2.putText(image, text, (8, th + 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return image


class _DaemonCollector:
    """Prometheus figures read at scrape time from the board and the daemon's stats provider."""

    def __init__(self, board: StatusBoard) -> None:
        self.board = board

    def describe(self) -> Iterable[Any]:
        return []  # collected dynamically; nothing to pre-register

    def collect(self) -> Iterable[Any]:
        board = self.board
        try:
            extra = dict(board.extra_stats() or {})
        except Exception:
            extra = {}
        yield GaugeMetricFamily("edgesight_fps", "Frames classified per second (5 s window)", value=board.fps())
        yield GaugeMetricFamily("edgesight_up", "1 while frames are being classified", value=float(board.healthy()))
        yield GaugeMetricFamily("edgesight_uptime_seconds", "Seconds since the daemon started", value=board.uptime_s())
        dropped = _total(_find(extra, "dropped", "dropped_frames", "drops"))
        yield CounterMetricFamily(
            "edgesight_dropped_frames", "Frames dropped (stale live frames, full queues)", value=dropped or 0.0
        )
        reconnects = _num(_find(extra, "reconnects", "mqtt_reconnects"))
        yield CounterMetricFamily(
            "edgesight_mqtt_reconnects", "Times the MQTT connection was re-established", value=reconnects or 0.0
        )
        source_reopens = _num(_find(extra, "source_reopens", "reopens"))
        if source_reopens is not None:
            yield CounterMetricFamily(
                "edgesight_source_reopens", "Times the frame source was reopened", value=source_reopens
            )
        drift = extra.get("drift")
        if isinstance(drift, Mapping) and _num(drift.get("score")) is not None:
            yield GaugeMetricFamily(
                "edgesight_drift_score",
                "Jensen-Shannon distance of live vs exported top-1 score/class distributions (0..1)",
                value=float(drift["score"]),
            )
            yield GaugeMetricFamily(
                "edgesight_drift_alert", "1 while the drift alert is raised", value=float(bool(drift.get("active")))
            )
        capture = extra.get("capture")
        if isinstance(capture, Mapping):
            yield CounterMetricFamily(
                "edgesight_captures", "Frames saved for retraining", value=float(capture.get("saved", 0))
            )
        info = {
            "name": str(board.model.get("name", "")),
            "version": str(board.model.get("version", "")),
            "runtime": str(board.runtime.get("name", "")),
            "runtime_version": str(board.runtime.get("version", "")),
        }
        yield InfoMetricFamily("edgesight_model", "The model being run", value=info)
