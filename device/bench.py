"""The measurements behind ``edgesight bench``: latency and throughput of models and the pipeline.

Every figure is measured, none is derived from a spec sheet, and the baselines are measured in
the same run as the thing they judge: the CPU-bound limit ``cores / (t_decode+preprocess +
t_invoke_1_thread)`` (each term measured alone) and the sequential read-preprocess-invoke loop
of the usual Raspberry Pi example. The pipeline and the sequential loop run in fresh child
processes so their peak RSS is theirs alone and neither inherits the other's warm state.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .bench_video import describe_source, iter_frames, timed_frames
from .classify import Classifier
from .core.errors import EdgesightError
from .machine import cpu_temperature_c, machine_info, peak_rss_mb, usable_cores

log = logging.getLogger(__name__)

SCHEMA = "edgesight.bench/1"
FRAME_SIZES: dict[str, tuple[int, int]] = {"640x480": (640, 480), "1280x720": (1280, 720), "1920x1080": (1920, 1080)}
STAGES = ("invoke", "preprocess", "limit", "sequential", "pipeline", "mqtt", "cold_start")
Step = Callable[[str], None]
# A child run that takes longer than this is hung, not slow (a Pi Zero 2 runs V2 at ~3 fps).
CHILD_TIMEOUT_S = 120
CHILD_TIMEOUT_PER_FRAME_S = 2.0


@dataclass(frozen=True)
class Latency:
    """Summary of a set of timings in milliseconds (linear-interpolated percentiles)."""

    n: int
    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float

    @classmethod
    def of(cls, samples_ms: list[float] | np.ndarray) -> Latency:
        values = np.asarray(samples_ms, dtype=np.float64)
        if values.size == 0:
            raise ValueError("no samples to summarise")
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return cls(
            int(values.size),
            float(values.mean()),
            float(p50),
            float(p90),
            float(p99),
            float(values.min()),
            float(values.max()),
        )

    def as_dict(self) -> dict[str, float]:
        return {key: (value if key == "n" else round(value, 3)) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class Target:
    """One row of the benchmark: a model or bundle on one runtime."""

    model: str
    labels: str | None = None
    runtime: str = "litert"
    model_file: str | None = None
    fit: str | None = None


@dataclass
class Settings:
    """How much to measure; defaults give stable figures in about half a minute per model."""

    threads: list[int] = field(default_factory=lambda: default_thread_counts())
    runs: int = 200
    warmup: int = 20
    frames: int = 300
    mqtt: bool = False
    cold_runs: int = 3
    cold_image: Path | None = None
    skip: frozenset[str] = frozenset()


# --------------------------------------------------------------------------- the machine


def default_thread_counts() -> list[int]:
    """1, 2, 4 ... up to the usable cores, and the core count itself (e.g. 1,2,3 on 3 cores)."""
    cores = usable_cores()
    counts = [n for n in (1, 2, 4, 8) if n <= cores]
    return counts if cores in counts else counts + [cores]


# --------------------------------------------------------------------------- single measurements


def time_calls(fn: Callable[[], Any], runs: int, warmup: int) -> Latency:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed one by one."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return Latency.of(samples)


def measure_invoke(classifier: Classifier, frame: np.ndarray, runs: int, warmup: int) -> Latency:
    """Raw inference on one prepared tensor: set input, invoke, read output (no pre/post work)."""
    tensor = classifier.preprocess(frame)
    return time_calls(lambda: classifier.runtime.infer(tensor), runs, warmup)


def measure_preprocess(classifier: Classifier, frame: np.ndarray, runs: int, warmup: int) -> dict[str, Latency]:
    """Preprocessing (colour, fit, resize, dtype) of BGR frames of each common camera size."""
    results = {}
    for name, (width, height) in FRAME_SIZES.items():
        sized = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
        results[name] = time_calls(lambda sized=sized: classifier.preprocess(sized), runs, warmup)
    return results


def measure_source_work(classifier: Classifier, source: Path, frames: int) -> tuple[Latency, Latency]:
    """Decode and preprocessing time per frame of the real source, each timed on its own."""
    decode, prep = [], []
    for frame, _, read_ms in timed_frames(source, frames):
        decode.append(read_ms)
        t2 = time.perf_counter()
        classifier.preprocess(frame)
        prep.append((time.perf_counter() - t2) * 1e3)
    if not decode:
        raise EdgesightError(f"{source}: no frames could be read")
    return Latency.of(decode), Latency.of(prep)


def cpu_limit(cores: int, decode_ms: float, preprocess_ms: float, invoke_1_thread_ms: float) -> dict[str, float]:
    """The frame rate at which every core does only necessary work: cores / per-frame CPU time.

    Means, not medians: a rate is frames per total time, and the mean is what totals add up to.
    """
    per_frame = decode_ms + preprocess_ms + invoke_1_thread_ms
    return {
        "fps": round(cores / per_frame * 1e3, 2),
        "cores": cores,
        "decode_ms": round(decode_ms, 3),
        "preprocess_ms": round(preprocess_ms, 3),
        "invoke_1_thread_ms": round(invoke_1_thread_ms, 3),
        "per_frame_cpu_ms": round(per_frame, 3),
    }


def steady_fps(done_times: list[float]) -> float:
    """Frames per second between the first and the last result (start-up time excluded)."""
    if len(done_times) < 2 or done_times[-1] <= done_times[0]:
        return 0.0
    return (len(done_times) - 1) / (done_times[-1] - done_times[0])


# --------------------------------------------------------------------------- child-process runs


def child_entry() -> int:
    """Entry of a child run: ``argv = [function, kwargs-json, result-path]``; the result is JSON."""
    function, kwargs, result_path = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = globals()[function](**kwargs)
    except EdgesightError as exc:
        result = {"error": str(exc), "error_type": type(exc).__name__}
    else:
        result["peak_rss_mb"] = peak_rss_mb()
    result_path.write_text(json.dumps(result), encoding="utf-8")
    return 0


def run_in_child(function: str, **kwargs: Any) -> dict[str, Any]:
    """Run ``function(**kwargs)`` of this module in a fresh interpreter; add that process's peak RSS.

    A new ``python`` (not a fork) so the measured process holds only what the run needs, as a
    device process would; the result comes back as JSON through a file, not stdout, so nothing
    a library prints can corrupt it.
    """
    with tempfile.TemporaryDirectory(prefix="edgesight-bench-") as tmp:
        result_path = Path(tmp) / "result.json"
        code = "import sys; from edgesight.device.bench import child_entry; sys.exit(child_entry())"
        timeout = CHILD_TIMEOUT_S + CHILD_TIMEOUT_PER_FRAME_S * int(kwargs.get("frames", 0))
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code, function, json.dumps(kwargs), str(result_path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise EdgesightError(f"{function} run did not finish within {timeout:.0f} s (stopped)") from None
        if proc.returncode != 0 or not result_path.exists():
            lines = proc.stderr.strip().splitlines()
            raise EdgesightError(
                f"{function} run failed in its child process ({lines[-1] if lines else f'exit code {proc.returncode}'})"
            )
        result = json.loads(result_path.read_text(encoding="utf-8"))
    if "error" in result:
        raise EdgesightError(result["error"])
    return result


def sequential_loop(target: dict[str, Any], source: str, frames: int) -> dict[str, Any]:
    """Read, preprocess, invoke, rank, one after another: the shape of the Raspberry Pi example.

    The interpreter uses the runtime's default threads (all cores), as the example does.
    """
    classifier = Classifier.open(
        target["model"], target["labels"], runtime=target["runtime"], fit=target["fit"], model_file=target["model_file"]
    )
    stages: dict[str, list[float]] = {"capture": [], "preprocess": [], "infer": [], "postprocess": [], "total": []}
    done: list[float] = []
    for frame, t0, read_ms in timed_frames(Path(source), frames):
        result = classifier.classify(frame)
        t2 = time.perf_counter()
        stages["capture"].append(read_ms)
        for name in ("preprocess", "infer", "postprocess"):
            stages[name].append(result.latency_ms[name])
        stages["total"].append((t2 - t0) * 1e3)
        done.append(t2)
    return {
        "fps": round(steady_fps(done), 2),
        "frames": len(done),
        "threads": getattr(classifier.runtime, "num_threads", None),
        "stages": {name: Latency.of(values).as_dict() for name, values in stages.items() if values},
    }


# --------------------------------------------------------------------------- cold start


def cold_start(target: Target, image: Path, runs: int) -> Latency:
    """Wall time from launching ``edgesight predict`` to its first result line, over ``runs`` runs."""
    command = [sys.executable, "-m", "edgesight.device.cli", "predict", target.model, str(image), "--json"]
    if target.labels:
        command += ["--labels", target.labels]
    if target.model_file:
        command += ["--model-file", target.model_file]
    if target.fit:
        command += ["--crop", target.fit]
    command += ["--runtime", target.runtime]
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        elapsed = (time.perf_counter() - t0) * 1e3
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0 or not line.startswith("{"):
            reason = err.strip().splitlines()[-1] if err.strip() else f"exit code {proc.returncode}"
            raise EdgesightError(f"cold start: edgesight predict {target.model} failed ({reason})")
        samples.append(elapsed)
    return Latency.of(samples)


# --------------------------------------------------------------------------- one model


def target_dict(target: Target) -> dict[str, Any]:
    return asdict(target)


def describe_model(classifier: Classifier) -> dict[str, Any]:
    spec, runtime = classifier.spec, classifier.runtime
    return {
        "name": spec.name or spec.model_path.stem,
        "version": spec.version or None,
        "path": str(spec.model_path),
        "bundle": str(spec.bundle_dir) if spec.bundle_dir else None,
        "bytes": spec.model_path.stat().st_size,
        "input": {"shape": list(runtime.input.shape), "dtype": runtime.input.dtype, "fit": classifier.contract.fit},
        "runtime": {"name": runtime.name, "version": runtime.version},
    }


def bench_target(target: Target, settings: Settings, source: Path, step: Step) -> dict[str, Any]:
    """Every figure for one model on one runtime; ``step`` is told as each measurement ends."""
    skip = settings.skip
    first_frame = next(iter_frames(source, 1))
    name = f"{Path(target.model).name}/{target.runtime}"

    def finished(label: str) -> None:
        step(f"{name}: {label} done")

    report: dict[str, Any] = {"target": target_dict(target)}
    invoke: dict[str, Latency] = {}
    classifier = None
    for threads in settings.threads:
        classifier = Classifier.open(
            target.model,
            target.labels,
            runtime=target.runtime,
            num_threads=threads,
            fit=target.fit,
            model_file=target.model_file,
        )
        if "invoke" not in skip:
            invoke[str(threads)] = measure_invoke(classifier, first_frame, settings.runs, settings.warmup)
        finished(f"invoke x{threads}")
    assert classifier is not None
    report.update(describe_model(classifier))
    report["invoke"] = {k: v.as_dict() for k, v in invoke.items()}
    if "preprocess" not in skip:
        report["preprocess"] = {
            k: v.as_dict()
            for k, v in measure_preprocess(
                classifier, first_frame, max(10, settings.runs // 4), min(5, settings.warmup)
            ).items()
        }
    finished("preprocess")
    if "limit" not in skip:
        one = Classifier.open(
            target.model,
            target.labels,
            runtime=target.runtime,
            num_threads=1,
            fit=target.fit,
            model_file=target.model_file,
        )
        invoke_1 = invoke.get("1") or measure_invoke(one, first_frame, settings.runs, settings.warmup)
        decode, prep = measure_source_work(one, source, settings.frames)
        report["decode"] = decode.as_dict()
        report["source_preprocess"] = prep.as_dict()
        report["limit"] = cpu_limit(usable_cores(), decode.mean, prep.mean, invoke_1.mean)
    finished("limit")
    child_target = target_dict(target)
    if "sequential" not in skip:
        report["sequential"] = run_in_child(
            "sequential_loop", target=child_target, source=str(source), frames=settings.frames
        )
    finished("sequential")
    if "pipeline" not in skip:
        report["pipeline"] = run_in_child(
            "pipeline_run", target=child_target, source=str(source), frames=settings.frames
        )
    finished("pipeline")
    if settings.mqtt and "mqtt" not in skip:
        from .bench_mqtt import measure_mqtt  # paho and mosquitto only when asked for

        report["mqtt"] = measure_mqtt(child_target, source, settings.frames)
    finished("mqtt")
    if "cold_start" not in skip and settings.cold_image is not None:
        report["cold_start"] = cold_start(target, settings.cold_image, settings.cold_runs).as_dict()
    finished("cold start")
    add_ratios(report)
    return report


def add_ratios(report: dict[str, Any]) -> None:
    """Pipeline fps over the CPU-bound limit and over the sequential loop, when both were measured."""
    pipeline = report.get("pipeline") or {}
    fps = pipeline.get("fps")
    if not fps:
        return
    if report.get("limit"):
        pipeline["ratio_to_limit"] = round(fps / report["limit"]["fps"], 3)
    if (report.get("sequential") or {}).get("fps"):
        pipeline["ratio_to_sequential"] = round(fps / report["sequential"]["fps"], 3)


# --------------------------------------------------------------------------- the pipeline


def pipeline_run(
    target: dict[str, Any], source: str, frames: int, realtime: bool = False, mqtt: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The daemon's overlapped pipeline on a file source, with the worker plan it picks itself.

    ``realtime`` paces the file to its frame rate, like a camera, so latency is not inflated by
    a queue that a flat-out file source keeps full. With ``mqtt`` (host, port, prefix) every
    result is published through the daemon's own MQTT link and payload, and each frame's capture
    and hand-off wall times are returned so the subscriber's arrival times can be matched to them.
    """
    from .core.bundle import resolve_model
    from .pipeline import STAGES as PIPELINE_STAGES
    from .pipeline import Pipeline, plan_workers
    from .results import FrameResult
    from .sources import open_source

    plan = plan_workers()
    spec = resolve_model(target["model"], target["labels"], target["model_file"])  # hashes checked once

    def make_classifier() -> Classifier:
        return Classifier.open(spec, runtime=target["runtime"], num_threads=plan.threads_per_worker, fit=target["fit"])

    publisher = None
    if mqtt is not None:
        from .bench_mqtt import ResultPublisher

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
    report = {
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


# --------------------------------------------------------------------------- the whole run


def steps_per_target(settings: Settings) -> int:
    return len(settings.threads) + 6


def run_bench(targets: list[Target], settings: Settings, source: Path, step: Step) -> dict[str, Any]:
    """Measure every target on ``source``; return the whole report (the JSON written by ``--json``)."""
    from edgesight import __version__

    temperature_start = cpu_temperature_c()
    rows = []
    for target in targets:
        try:
            rows.append(bench_target(target, settings, source, step))
        except EdgesightError as exc:
            if len(targets) == 1:
                raise
            log.warning("%s on %s: %s", target.model, target.runtime, exc)
            rows.append({"target": target_dict(target), "error": str(exc)})
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgesight": __version__,
        "machine": {**machine_info(), "cpu_temp_c": {"start": temperature_start, "end": cpu_temperature_c()}},
        "settings": {
            "threads": settings.threads,
            "runs": settings.runs,
            "warmup": settings.warmup,
            "frames": settings.frames,
            "mqtt": settings.mqtt,
            "cold_runs": settings.cold_runs,
            "skip": sorted(settings.skip),
        },
        "source": describe_source(source, settings.frames),
        "models": rows,
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
