"""``edgesight bench``: latency and throughput of models, bundles and runtimes, side by side.

Prints a table a person reads at a glance, writes the same figures as JSON (``--json``) and
Markdown (``--markdown``), and shows a progress bar on stderr while it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2

from ..bench.footage import check_source, iter_frames, make_test_video, scene_origin
from ..bench.orchestrator import run_bench
from ..bench.report import MachineState, warn_if_busy, write_json
from ..bench.settings import STAGES, Settings, Target, default_thread_counts
from ..bench.tables import render
from ..core.bundle import ModelSpec, resolve_model
from ..core.errors import EdgesightError, SourceError, UsageError
from ..core.preprocess import FITS, list_images, normalise_fit
from ..runtimes import RUNTIMES, available_runtimes, backend


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _thread_counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in _names(text)]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UsageError(f"--threads: expected comma-separated counts of 1 or more, e.g. 1,2,4; got {text!r}")
    return values


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "models",
        metavar="MODEL_OR_BUNDLE",
        nargs="+",
        help="bundle directories or .tflite files, measured side by side",
    )
    parser.add_argument("--labels", metavar="FILE", help="labels file for bare .tflite models")
    parser.add_argument(
        "--threads",
        default=None,
        metavar="LIST",
        help=f"interpreter thread counts for the invoke latency (default: "
        f"{','.join(map(str, default_thread_counts()))} on this machine)",
    )
    parser.add_argument("--runs", type=int, default=200, metavar="N", help="timed invokes per thread count (200)")
    parser.add_argument("--warmup", type=int, default=20, metavar="N", help="untimed invokes first (20)")
    parser.add_argument(
        "--source",
        metavar="FILE_OR_DIR",
        help="video file or image folder for the pipeline runs (default: a generated 720p video)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=300,
        metavar="N",
        help="frames per pipeline/sequential run, and the generated video's length (300)",
    )
    parser.add_argument(
        "--runtime",
        default="all",
        metavar="LIST",
        help=f"runtimes to compare, comma-separated ({', '.join(RUNTIMES)}), or all (default): "
        f"every runtime this machine can run the model on",
    )
    parser.add_argument("--crop", choices=FITS + ("center",), default=None, help="frame fit (default: the model's)")
    parser.add_argument(
        "--all-variants",
        action="store_true",
        help="for a bundle, measure every .tflite it holds (int8, fp16, float ...)",
    )
    parser.add_argument(
        "--mqtt", action="store_true", help="also measure capture-to-subscriber latency through a local mosquitto"
    )
    parser.add_argument("--cold-runs", type=int, default=3, metavar="N", help="cold starts to time (3)")
    parser.add_argument(
        "--skip",
        default="",
        metavar="LIST",
        help=f"measurements to leave out: {','.join(s for s in STAGES if s != 'mqtt')}",
    )
    parser.add_argument("--json", metavar="OUT", help="write every figure as JSON")
    parser.add_argument("--markdown", metavar="OUT", help="write the tables as Markdown")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def check_output(flag: str, value: str | None) -> None:
    """An output path that cannot be written fails now, not after minutes of measuring."""
    if value is None:
        return
    path = Path(value)
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; give a file name")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UsageError(f"{flag} {path}: cannot write in {parent}")


def write_outputs(args: argparse.Namespace, report: dict[str, Any]) -> None:
    try:
        if args.json:
            write_json(report, Path(args.json))
        if args.markdown:
            Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
            Path(args.markdown).write_text(render(report, markdown=True), encoding="utf-8")
    except OSError as exc:
        raise EdgesightError(f"cannot write the results: {exc}") from None


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad flags before minutes of measuring, with one line naming the flag."""
    if args.runs < 1:
        raise UsageError("--runs must be at least 1")
    if args.warmup < 0:
        raise UsageError("--warmup must be 0 or more")
    if args.frames < 2:
        raise UsageError("--frames must be at least 2 (fps needs two results)")
    if args.cold_runs < 1:
        raise UsageError("--cold-runs must be at least 1")
    check_output("--json", args.json)
    check_output("--markdown", args.markdown)
    args.threads = _thread_counts(args.threads) if args.threads is not None else default_thread_counts()
    args.skip = _names(args.skip)
    unknown = [name for name in args.skip if name not in STAGES]
    if unknown:
        raise UsageError(f"--skip: unknown measurement(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    args.runtime = ["all"] if args.runtime.strip() == "all" else _names(args.runtime)
    unknown = [name for name in args.runtime if name not in RUNTIMES and name != "all"]
    if unknown or not args.runtime:
        raise UsageError(
            f"--runtime: unknown runtime(s) {', '.join(unknown) or repr('')}; choose from "
            f"{', '.join(sorted(RUNTIMES))} or all"
        )


def model_file_for(runtime: str, spec: ModelSpec) -> Path:
    """The file ``runtime`` would run for ``spec`` (``model.onnx`` for onnx, the variant for litert)."""
    return Path(backend(runtime).model_for(spec))


def targets(args: argparse.Namespace) -> list[Target]:
    """One row per distinct (runtime, model file): each model's runtimes, and with --all-variants
    each ``.tflite`` of a bundle on the runtimes that run .tflite files. Models are checked now,
    so a missing file or a tampered bundle fails before minutes of measuring."""
    fit = normalise_fit(args.crop) if args.crop else None  # the report names the fit one way
    found = []
    for model in args.models:
        spec = resolve_model(model, args.labels)
        variants: list[str | None] = [None]
        if args.all_variants and spec.bundle_dir is not None:
            default = spec.manifest["default_model"]
            variants += [name for name in spec.manifest["files"] if name.endswith(".tflite") and name != default]
        labels = args.labels if spec.bundle_dir is None else None
        runtimes = available_runtimes(spec) if args.runtime == ["all"] else args.runtime
        if not runtimes:
            raise EdgesightError(
                f"{model}: no runtime on this machine can run it "
                f"(tried: {', '.join(sorted(RUNTIMES))}; see edgesight info {model})"
            )
        seen: set[tuple[str, Path]] = set()
        for runtime in runtimes:
            for variant in variants:
                variant_spec = resolve_model(model, args.labels, variant) if variant else spec
                key = (runtime, model_file_for(runtime, variant_spec))
                if key not in seen:
                    seen.add(key)
                    found.append(Target(model=str(model), labels=labels, runtime=runtime, model_file=variant, fit=fit))
    return found


def prepare_source(args: argparse.Namespace, workdir: Path) -> Path:
    if args.source:
        source = Path(args.source)
        check_source(source)
        return source
    return make_test_video(workdir / "bench-720p.mp4", frames=args.frames)


def cold_start_image(source: Path, workdir: Path) -> Path:
    """An image file for ``predict``: the folder's first image, or the video's first frame as JPEG."""
    if source.is_dir():
        return list_images([source])[0]
    path = workdir / "first-frame.jpg"
    if not cv2.imwrite(str(path), next(iter_frames(source, 1))):
        raise SourceError(f"{path}: could not write the cold-start image")
    return path


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    check_args(args)
    chosen = targets(args)
    start = MachineState.now()  # before the video is written and any measuring starts
    with tempfile.TemporaryDirectory(prefix="edgesight-bench-") as tmp:
        workdir = Path(tmp)
        source = prepare_source(args, workdir)
        settings = Settings(
            threads=args.threads,
            runs=args.runs,
            warmup=args.warmup,
            frames=args.frames,
            mqtt=args.mqtt,
            cold_runs=args.cold_runs,
            cold_image=cold_start_image(source, workdir),
            skip=frozenset(args.skip),
        )
        warn_if_busy(start)  # once the flags and the source are known good; before the bar, not inside it
        with tqdm(
            total=settings.steps_per_target() * len(chosen),
            desc="bench",
            unit="step",
            file=sys.stderr,
            disable=True if args.no_progress else None,
            leave=False,
        ) as bar:

            def step(label: str) -> None:
                bar.set_postfix_str(label, refresh=False)
                bar.update()

            report = run_bench(chosen, settings, source, step, start)
    if args.source is None:
        report["source"]["path"] = f"generated: {scene_origin()} panned, mp4v"
    print(render(report), flush=True)  # the figures are on screen even if a file cannot be written
    write_outputs(args, report)
    return 1 if any("error" in row for row in report["models"]) else 0
