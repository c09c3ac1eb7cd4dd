"""The baseline: read, preprocess, invoke, rank one after another, as the usual Raspberry Pi example.

Runs in a fresh child process (:mod:`.children`) so its peak RSS is its own and it inherits no
warm state from the pipeline run it is compared with.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..classify import Classifier
from .footage import timed_frames
from .measure import Latency, steady_fps


def sequential_loop(target: dict[str, Any], source: str, frames: int) -> dict[str, Any]:
    """fps, frame count, threads and per-stage latency of the loop on ``frames`` frames of ``source``.

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
