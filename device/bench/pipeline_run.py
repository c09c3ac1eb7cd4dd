"""The daemon's overlapped pipeline on a file source, run the way ``edgesight run`` would run it.

Runs in a fresh child process (:mod:`.children`); with ``mqtt`` it also publishes every result
through :mod:`.publisher` for :mod:`.mqtt_latency` to time.
"""

from __future__ import annotations

import time
from typing import Any

from ..classify import Classifier
from ..core.bundle import resolve_model
from ..core.errors import EdgesightError
from ..pipeline import STAGES as PIPELINE_STAGES
from ..pipeline import Pipeline, plan_workers
from ..results import FrameResult
from ..sources import open_source
from .measure import Latency, steady_fps


def pipeline_run(
    target: dict[str, Any], source: str, frames: int, realtime: bool = False, mqtt: dict[str, Any] | None = None
) -> dict[str, Any]:
    """fps, plan, drops and per-stage latency of the pipeline with the worker plan it picks itself.

    ``realtime`` paces the file to its frame rate, like a camera, so latency is not inflated by
    a queue that a flat-out file source keeps full. With ``mqtt`` (host, port, prefix) every
    result is published through the daemon's own MQTT link and payload, and each frame's capture
    and hand-off wall times are returned so the subscriber's arrival times can be matched to them.
    """
    plan = plan_workers()
    spec = resolve_model(target["model"], target["labels"], target["model_file"])  # hashes checked once

    def make_classifier() -> Classifier:
        return Classifier.open(spec, runtime=target["runtime"], num_threads=plan.threads_per_worker, fit=target["fit"])

    publisher = None
    if mqtt is not None:
        from .publisher import ResultPublisher  # paho only when asked for

        publisher = ResultPublisher(mqtt["host"], mqtt["port"], mqtt["prefix"])
    stages: dict[str, list[float]] = {stage: [] for stage in PIPELINE_STAGES}
    done: list[float] = []
    wall: dict[int, tuple[float, float]] = {}

    def on_result(result: FrameResult) -> None:
        done.append(time.perf_counter())
        for stage in PIPELINE_STAGES:
            stages[stage].append(result.latency_ms[stage])
        if publisher is not None:
            wall[result.frame.number] = (result.frame.timestamp, time.time())
            publisher.publish(result)

    # Interpreters are loaded before the source opens: a paced source's clock starts when it
    # opens, and frames it falls behind on during start-up would be dropped, like a camera's.
    ready = [make_classifier() for _ in range(plan.workers)]
    frame_source = open_source(source, realtime=realtime, reopen=False)
    try:
        pipeline = Pipeline(frame_source, ready.pop, workers=plan.workers, on_result=on_result, max_frames=frames)
        pipeline.run()
        stats = pipeline.stats()
    finally:
        frame_source.close()
        if publisher is not None:
            publisher.close()
    if not done:
        raise EdgesightError(f"{source}: the pipeline classified no frames")
    report: dict[str, Any] = {
        "fps": round(steady_fps(done), 2),
        "frames": len(done),
        "workers": plan.workers,
        "threads_per_worker": plan.threads_per_worker,
        "realtime": realtime,
        "dropped": stats.get("dropped", 0),
        "errors": stats.get("errors", 0),
        "latency": Latency.of(stages["total"]).as_dict(),
        "stages": {stage: Latency.of(values).as_dict() for stage, values in stages.items() if values},
    }
    if publisher is not None:
        report["wall"] = {str(number): times for number, times in wall.items()}
    return report
