#!/usr/bin/env python3
"""Pipeline fps vs the sequential loop vs the machine's CPU-bound limit, in paired rounds.

    .venv/bin/python scripts/pipeline_vs_sequential.py [--frames 300] [--repeats 3]
        [--video bench/cat_720p_pan.mp4] [--json bench/pipeline_vs_sequential.json]

A thin wrapper over ``edgesight bench``: each round is the bench's own measurement of the shared
MobileNet V2 (``edgesight.device.bench.orchestrator.bench_target``) on a 1280x720 pan of
``cat_720p.jpg`` (``edgesight.device.bench.footage``), restricted to the figures compared here:

- each stage alone: decode (VideoCapture.read), preprocess (the one ``prepare``) on the source,
  and invoke on a single-threaded interpreter, per frame (means);
- the limit ``cores / (t_decode + t_preprocess + t_invoke_1_thread)``: what a machine can do
  if every core is busy with useful work all the time;
- the sequential loop: read, preprocess, invoke one after another on an interpreter with the
  default threads (the usual Raspberry Pi example), in a fresh child process;
- the pipeline (``edgesight.device.pipeline``) with the plan it picks for this machine, in a
  fresh child process. fps are steady-state, as ``edgesight bench`` reports them.

Each round measures all of it back to back, so the ratios of a round share the same background
load; the median round (by pipeline / limit) is reported and every round is in the JSON, with
the one-minute load average before and after so a machine shared with other work is visible.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edgesight.device.bench.footage import make_test_video, testdata_dir
from edgesight.device.bench.orchestrator import bench_target
from edgesight.device.bench.report import busy_warning
from edgesight.device.bench.settings import Settings, Target
from edgesight.device.machine import load_average, usable_cores

ROOT = Path(__file__).resolve().parents[1]
MODEL = ("models", "mobilenet_v2_1.0_224_quant.tflite")
LABELS = ("models", "imagenet_labels.txt")
IMAGE = ("images", "cat_720p.jpg")
# only invoke at 1 thread, the limit's terms, the sequential loop and the pipeline
SKIP = frozenset({"preprocess", "mqtt", "cold_start"})


def one_round(number: int, target: Target, settings: Settings, video: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """One bench measurement, flattened to this script's figures; and the bench's row itself."""
    row = bench_target(target, settings, video, step=lambda _label: None)
    limit, sequential, pipeline = row["limit"], row["sequential"], row["pipeline"]
    figures = {
        "round": number,
        "t_decode_ms": round(limit["decode_ms"], 2),
        "t_preprocess_ms": round(limit["preprocess_ms"], 2),
        "t_invoke_1_thread_ms": round(limit["invoke_1_thread_ms"], 2),
        "limit_fps": round(limit["fps"], 1),
        "sequential_fps": round(sequential["fps"], 1),
        "pipeline_fps": round(pipeline["fps"], 1),
        "pipeline_vs_limit": pipeline["ratio_to_limit"],
        "pipeline_vs_sequential": pipeline["ratio_to_sequential"],
        "load_average_1min": load_average(),
    }
    return figures, row


def print_table(report: dict[str, Any], rounds: int) -> None:
    cores, plan = report["cores"], report["pipeline_plan"]
    lines = [
        ("decode 1280x720 (ms/frame)", report["t_decode_ms"], ".2f", ""),
        ("preprocess (ms/frame)", report["t_preprocess_ms"], ".2f", ""),
        ("invoke, 1 thread (ms/frame)", report["t_invoke_1_thread_ms"], ".2f", ""),
        (f"CPU-bound limit (fps), {cores} cores", report["limit_fps"], ".1f", ""),
        (f"sequential loop (fps), {report['sequential_threads']} threads", report["sequential_fps"], ".1f", ""),
        (f"pipeline (fps), {plan['workers']}x{plan['threads_per_worker']}", report["pipeline_fps"], ".1f", ""),
        ("pipeline / limit", report["pipeline_vs_limit"], ".2f", "   (target >= 0.85)"),
        ("pipeline / sequential", report["pipeline_vs_sequential"], ".2f", "   (target >= 1.30)"),
    ]
    print(f"\nthe median round (by pipeline / limit) of {rounds}:")
    print(f"{'figure':<36}{'value':>10}")
    for label, value, spec, note in lines:
        print(f"{label:<36}{value:>10{spec}}{note}")
    print(
        f"load average (1 min) before/after: {report['load_average_before']} / {report['load_average_after']} "
        f"(other processes on this machine make every figure noisy)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--video", type=Path, default=ROOT / "bench" / "cat_720p_pan.mp4")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "pipeline_vs_sequential.json")
    args = parser.parse_args()
    if args.frames < 2 or args.repeats < 1:
        parser.error("--frames must be at least 2 and --repeats at least 1")
    data = testdata_dir()
    if data is None or not data.joinpath(*MODEL).is_file():
        print("pipeline_vs_sequential: error: shared test data not found (set EDGESIGHT_TESTDATA)", file=sys.stderr)
        return 1
    if not args.video.exists():
        make_test_video(args.video, frames=args.frames, image=data.joinpath(*IMAGE))
    cores, load_before = usable_cores(), load_average()
    warning = busy_warning(load_before, cores)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    target = Target(model=str(data.joinpath(*MODEL)), labels=str(data.joinpath(*LABELS)))
    settings = Settings(threads=[1], runs=100, warmup=10, frames=args.frames, skip=SKIP)
    rounds, rows = [], []
    for number in range(1, args.repeats + 1):
        figures, row = one_round(number, target, settings, args.video)
        rounds.append(figures)
        rows.append(row)
        print(
            f"round {number}: limit {figures['limit_fps']:6.1f}  sequential {figures['sequential_fps']:6.1f}  "
            f"pipeline {figures['pipeline_fps']:6.1f} fps  (x{figures['pipeline_vs_limit']:.2f} of limit, "
            f"x{figures['pipeline_vs_sequential']:.2f} of sequential; load {figures['load_average_1min']})",
            flush=True,
        )
    median = sorted(rounds, key=lambda r: r["pipeline_vs_limit"])[len(rounds) // 2]
    row = rows[median["round"] - 1]
    report = {
        "video": str(args.video),
        "frames": args.frames,
        "size": "1280x720",
        "model": MODEL[-1],
        "cores": cores,
        **{k: v for k, v in median.items() if k not in ("round", "load_average_1min")},
        "median_round": median["round"],
        "sequential_threads": row["sequential"]["threads"] or cores,
        "pipeline_plan": {
            "workers": row["pipeline"]["workers"],
            "threads_per_worker": row["pipeline"]["threads_per_worker"],
        },
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "pipeline_latency_ms": row["pipeline"]["latency"],
        "rounds": rounds,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report, len(rounds))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
