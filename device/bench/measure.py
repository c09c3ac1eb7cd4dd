"""Single measurements: a latency summary, timed calls, and each figure measured on its own.

Every figure is measured, none is derived from a spec sheet: raw invoke, preprocessing per
frame size, decode and preprocessing on the real source, the CPU-bound limit built from those,
and the cold start of ``edgesight predict``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..classify import Classifier
from ..core.errors import EdgesightError
from .footage import timed_frames
from .settings import Target

FRAME_SIZES: dict[str, tuple[int, int]] = {"640x480": (640, 480), "1280x720": (1280, 720), "1920x1080": (1920, 1080)}


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
    def of(cls, samples_ms: Sequence[float] | np.ndarray) -> Latency:
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

        def prepare(sized: np.ndarray = sized) -> np.ndarray:
            return classifier.preprocess(sized)

        results[name] = time_calls(prepare, runs, warmup)
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


def steady_fps(done_times: Sequence[float]) -> float:
    """Frames per second between the first and the last result (start-up time excluded)."""
    if len(done_times) < 2 or done_times[-1] <= done_times[0]:
        return 0.0
    return (len(done_times) - 1) / (done_times[-1] - done_times[0])


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
        assert proc.stdout is not None  # stdout=PIPE
        line = proc.stdout.readline()
        elapsed = (time.perf_counter() - t0) * 1e3
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0 or not line.startswith("{"):
            reason = err.strip().splitlines()[-1] if err.strip() else f"exit code {proc.returncode}"
            raise EdgesightError(f"cold start: edgesight predict {target.model} failed ({reason})")
        samples.append(elapsed)
    return Latency.of(samples)
