#!/usr/bin/env python3
"""Pipeline fps vs the sequential loop vs the machine's CPU-bound limit, all in one run.

    .venv/bin/python scripts/pipeline_vs_sequential.py [--frames 300] [--json bench/pipeline_vs_sequential.json]

On a 1280x720 video made from ``cat_720p.jpg`` (pan/crop frames, cv2.VideoWriter) and the
shared MobileNet V2, it measures:

- each stage alone: decode (VideoCapture.read), preprocess (the one ``prepare``), and invoke on
  a single-threaded interpreter, per frame;
- the limit ``cores / (t_decode + t_preprocess + t_invoke_1_thread)``: what a machine can do
  if every core is busy with useful work all the time;
- the sequential loop: read, preprocess, invoke one after another on an interpreter with the
  default threads (the usual Raspberry Pi example);
- the pipeline (``edgesight.device.pipeline``) with the plan it picks for this machine.

Each round measures all of it back to back; the median round is reported (every round is in the
JSON), and the load average is printed so a machine shared with other work is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import cv2  # noqa: E402
from videos import pan_frames, write_video  # noqa: E402

from edgesight.device.classify import Classifier  # noqa: E402
from edgesight.device.machine import usable_cores  # noqa: E402
from edgesight.device.pipeline import Pipeline, plan_workers  # noqa: E402
from edgesight.device.sources import open_source  # noqa: E402

TESTDATA = Path(os.environ.get("EDGESIGHT_TESTDATA", ROOT.parent / "shared" / "testdata"))
MODEL = TESTDATA / "models" / "mobilenet_v2_1.0_224_quant.tflite"
LABELS = TESTDATA / "models" / "imagenet_labels.txt"


def make_video(path: Path, frames: int) -> Path:
    if not path.exists():
        image = cv2.imread(str(TESTDATA / "images" / "cat_720p.jpg"))
        write_video(path, pan_frames(image, frames, (1280, 720)), fps=30)
    return path


def decode_all(path: Path) -> tuple[list, float]:
    cap = cv2.VideoCapture(str(path))
    frames, t0 = [], time.perf_counter()
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    elapsed = time.perf_counter() - t0
    cap.release()
    return frames, elapsed / max(1, len(frames))


def per_frame(fn, items) -> float:
    t0 = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - t0) / len(items)


def sequential_fps(path: Path, classifier: Classifier) -> float:
    cap = cv2.VideoCapture(str(path))
    count, t0 = 0, time.perf_counter()
    while True:
        ok, image = cap.read()
        if not ok:
            break
        classifier.infer(classifier.preprocess(image))
        count += 1
    cap.release()
    return count / (time.perf_counter() - t0)


def pipeline_fps(path: Path) -> tuple[float, dict]:
    plan = plan_workers()
    source = open_source(str(path))
    count = [0]
    pipeline = Pipeline(
        source,
        lambda: Classifier.open(MODEL, LABELS, num_threads=plan.threads_per_worker),
        workers=plan.workers,
        on_result=lambda r: count.__setitem__(0, count[0] + 1),
    )
    t0 = time.perf_counter()
    pipeline.run()
    elapsed = time.perf_counter() - t0
    source.close()
    return count[0] / elapsed, pipeline.stats()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--video", type=Path, default=ROOT / "bench" / "cat_720p_pan.mp4")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "pipeline_vs_sequential.json")
    args = parser.parse_args()
    args.video.parent.mkdir(parents=True, exist_ok=True)
    video = make_video(args.video, args.frames)
    cores = usable_cores()
    load_before = os.getloadavg()

    one = Classifier.open(MODEL, LABELS, num_threads=1)
    default = Classifier.open(MODEL, LABELS, num_threads=cores)  # the Pi example: one interpreter, all cores
    rounds, stats = [], {}
    for number in range(1, args.repeats + 1):
        # one round measures everything back to back, so the ratios of a round share the same
        # background load; the report gives the median round (and each round) rather than mixing
        # the best stage times of one moment with the fps of another
        frames, t_decode = decode_all(video)
        tensors = [one.preprocess(f) for f in frames[:5]]  # warm-up
        t_pre = per_frame(one.preprocess, frames)
        t_inv = per_frame(one.infer, [tensors[0]] * min(100, len(frames)))
        del frames, tensors
        seq = sequential_fps(video, default)
        fps, run_stats = pipeline_fps(video)
        limit = cores / (t_decode + t_pre + t_inv)
        rounds.append(
            {
                "round": number,
                "t_decode_ms": round(t_decode * 1e3, 2),
                "t_preprocess_ms": round(t_pre * 1e3, 2),
                "t_invoke_1_thread_ms": round(t_inv * 1e3, 2),
                "limit_fps": round(limit, 1),
                "sequential_fps": round(seq, 1),
                "pipeline_fps": round(fps, 1),
                "pipeline_vs_limit": round(fps / limit, 3),
                "pipeline_vs_sequential": round(fps / seq, 3),
                "load_average_1min": round(os.getloadavg()[0], 2),
            }
        )
        print(
            f"round {number}: limit {limit:6.1f}  sequential {seq:6.1f}  pipeline {fps:6.1f} fps  "
            f"(x{fps / limit:.2f} of limit, x{fps / seq:.2f} of sequential; load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        stats = run_stats
    median = sorted(rounds, key=lambda r: r["pipeline_vs_limit"])[len(rounds) // 2]
    plan = plan_workers()
    report = {
        "video": str(video),
        "frames": args.frames,
        "size": "1280x720",
        "model": MODEL.name,
        "cores": cores,
        **{k: v for k, v in median.items() if k not in ("round", "load_average_1min")},
        "median_round": median["round"],
        "sequential_threads": cores,
        "pipeline_plan": {"workers": plan.workers, "threads_per_worker": plan.threads_per_worker},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "pipeline_latency_ms": stats.get("latency_ms", {}),
        "rounds": rounds,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nthe median round (by pipeline / limit) of {len(rounds)}:")
    print(f"{'figure':<36}{'value':>10}")
    print(f"{'decode 1280x720 (ms/frame)':<36}{report['t_decode_ms']:>10.2f}")
    print(f"{'preprocess (ms/frame)':<36}{report['t_preprocess_ms']:>10.2f}")
    print(f"{'invoke, 1 thread (ms/frame)':<36}{report['t_invoke_1_thread_ms']:>10.2f}")
    print(f"{'CPU-bound limit (fps), ' + str(cores) + ' cores':<36}{report['limit_fps']:>10.1f}")
    print(f"{'sequential loop (fps), ' + str(cores) + ' threads':<36}{report['sequential_fps']:>10.1f}")
    print(
        f"{'pipeline (fps), ' + str(plan.workers) + 'x' + str(plan.threads_per_worker):<36}"
        f"{report['pipeline_fps']:>10.1f}"
    )
    print(f"{'pipeline / limit':<36}{report['pipeline_vs_limit']:>10.2f}   (target >= 0.85)")
    print(f"{'pipeline / sequential':<36}{report['pipeline_vs_sequential']:>10.2f}   (target >= 1.30)")
    print(
        f"load average before/after: {report['load_average_before']} / {report['load_average_after']} "
        f"(other processes on this machine make every figure noisy)"
    )
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
