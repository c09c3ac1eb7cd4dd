"""Every measurement of ``edgesight bench`` for every target, in order, into one report.

The baselines are measured in the same run as the thing they judge: the CPU-bound limit
``cores / (t_decode+preprocess + t_invoke_1_thread)`` (each term measured alone) and the
sequential read-preprocess-invoke loop of the usual Raspberry Pi example. The pipeline and the
sequential loop run in fresh child processes so their peak RSS is theirs alone and neither
inherits the other's warm state. The measuring itself lives in the modules this one calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..classify import Classifier
from ..core.errors import EdgesightError
from ..machine import usable_cores
from .children import run_in_child
from .footage import describe_source, iter_frames
from .measure import Latency, cold_start, cpu_limit, measure_invoke, measure_preprocess, measure_source_work
from .pipeline_run import pipeline_run
from .report import MachineState, add_ratios, assemble, describe_model, target_dict, warn_if_busy
from .sequential import sequential_loop
from .settings import Settings, Target

log = logging.getLogger(__name__)

Step = Callable[[str], None]


def open_classifier(target: Target, threads: int | None = None) -> Classifier:
    return Classifier.open(
        target.model,
        target.labels,
        runtime=target.runtime,
        num_threads=threads,
        fit=target.fit,
        model_file=target.model_file,
    )


def bench_target(target: Target, settings: Settings, source: Path, step: Step) -> dict[str, Any]:
    """Every figure for one model on one runtime; ``step`` is told as each measurement ends."""
    skip = settings.skip
    first_frame = next(iter_frames(source, 1))
    name = f"{Path(target.model).name}/{target.runtime}"

    def finished(label: str) -> None:
        step(f"{name}: {label} done")

    row: dict[str, Any] = {"target": target_dict(target)}
    invoke: dict[str, Latency] = {}
    classifier = None
    for threads in settings.threads:
        classifier = open_classifier(target, threads)
        if "invoke" not in skip:
            invoke[str(threads)] = measure_invoke(classifier, first_frame, settings.runs, settings.warmup)
        finished(f"invoke x{threads}")
    if classifier is None:
        raise EdgesightError("no thread count to measure (--threads is empty)")
    row.update(describe_model(classifier))
    row["invoke"] = {k: v.as_dict() for k, v in invoke.items()}
    if "preprocess" not in skip:
        runs, warmup = max(10, settings.runs // 4), min(5, settings.warmup)
        row["preprocess"] = {
            k: v.as_dict() for k, v in measure_preprocess(classifier, first_frame, runs, warmup).items()
        }
    finished("preprocess")
    if "limit" not in skip:
        one = open_classifier(target, 1)
        invoke_1 = invoke.get("1") or measure_invoke(one, first_frame, settings.runs, settings.warmup)
        decode, prep = measure_source_work(one, source, settings.frames)
        row["decode"] = decode.as_dict()
        row["source_preprocess"] = prep.as_dict()
        row["limit"] = cpu_limit(usable_cores(), decode.mean, prep.mean, invoke_1.mean)
    finished("limit")
    child_target = target_dict(target)
    if "sequential" not in skip:
        row["sequential"] = run_in_child(
            sequential_loop, target=child_target, source=str(source), frames=settings.frames
        )
    finished("sequential")
    if "pipeline" not in skip:
        row["pipeline"] = run_in_child(pipeline_run, target=child_target, source=str(source), frames=settings.frames)
    finished("pipeline")
    if settings.mqtt and "mqtt" not in skip:
        from .mqtt_latency import measure_mqtt  # paho and mosquitto only when asked for

        row["mqtt"] = measure_mqtt(child_target, source, settings.frames)
    finished("mqtt")
    if "cold_start" not in skip and settings.cold_image is not None:
        row["cold_start"] = cold_start(target, settings.cold_image, settings.cold_runs).as_dict()
    finished("cold start")
    add_ratios(row)
    return row


def run_bench(
    targets: list[Target], settings: Settings, source: Path, step: Step, start: MachineState | None = None
) -> dict[str, Any]:
    """Measure every target on ``source``; return the whole report (the JSON written by ``--json``).

    ``start`` is the machine's state before any measuring (read now when not given); a busy
    machine is warned about as soon as it is read.
    """
    if start is None:
        start = MachineState.now()
        warn_if_busy(start)
    rows = []
    for target in targets:
        try:
            rows.append(bench_target(target, settings, source, step))
        except EdgesightError as exc:
            if len(targets) == 1:
                raise
            log.warning("%s on %s: %s", target.model, target.runtime, exc)
            rows.append({"target": target_dict(target), "error": str(exc)})
    return assemble(rows, settings, describe_source(source, settings.frames), start)
