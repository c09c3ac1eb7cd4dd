"""What a classified frame is, and its one JSON form.

Every consumer of results (MQTT ``result``, the HTTP ``/api/latest`` and stream, capture
sidecars, snapshots, the drift monitor) receives a :class:`FrameResult` and serialises it with
:func:`result_payload`, so a field or a rounding cannot differ between them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .classify import Classification, Prediction
from .sources import Frame

PAYLOAD_VERSION = 1
# Milliseconds to 0.01 ms: finer than any stage's jitter, short on the wire.
LATENCY_DIGITS = 2


@dataclass
class FrameResult:
    """A classified frame, handed to each consumer (MQTT, status page, capture, drift monitor).

    ``latency_ms`` has one entry per stage of :data:`~edgesight.device.pipeline.STAGES`:
    ``capture`` (read/decode), ``queue`` (waiting for a worker), ``preprocess``, ``infer``,
    ``postprocess`` (top-k), ``publish`` (waiting in the result queue for re-ordering) and
    ``total`` (capture start to hand-off). ``model`` is ``{"name": ..., "version": ...}``.
    """

    frame: Frame
    classification: Classification
    latency_ms: dict[str, float]
    model: dict[str, str]
    seq: int = 0
    done_at: float = field(default=0.0, repr=False)  # perf_counter when the worker finished
    read_at: float = field(default=0.0, repr=False)  # time.monotonic() right after the source read it

    @property
    def best(self) -> Prediction:
        return self.classification.best


# What the daemon fans each result out to (MQTT, status board, capture, drift), on one thread in frame order.
Consumer = Callable[[FrameResult], object]  # a return value (e.g. a capture's reason) is ignored


def result_payload(result: FrameResult) -> dict[str, Any]:
    """The JSON form of one result: ``<prefix>/result``, ``/api/latest``, sidecars, snapshots."""
    return {
        "v": PAYLOAD_VERSION,
        "timestamp": round(result.frame.timestamp, 3),
        "frame": result.frame.number,
        "top": [p.as_dict() for p in result.classification.top],
        "latency_ms": {k: round(float(v), LATENCY_DIGITS) for k, v in result.latency_ms.items()},
        "model": dict(result.model),
    }
