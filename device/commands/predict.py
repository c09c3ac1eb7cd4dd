"""``edgesight predict``: classify image files or folders and print a table or JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..classify import Classifier, Prediction
from ..core.errors import EdgesightError, UsageError
from ..core.preprocess import FITS, list_images, max_image_pixels, normalise_fit, read_image
from ..runtimes import RUNTIME_CHOICES


def fit_argument(value: str) -> str:
    """``--crop``'s type: settle the spelling (``center`` -> ``centre``) before argparse checks the choice.

    So the help lists each fit once while every spelling :func:`normalise_fit` takes still works;
    an unknown value is passed through for argparse to refuse as an invalid choice (exit 2).
    """
    try:
        return normalise_fit(value)
    except ValueError:
        return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every verb that loads a model shares."""
    parser.add_argument("--labels", metavar="FILE", help="labels file (one a line) for a bare .tflite")
    parser.add_argument(
        "--crop",
        type=fit_argument,
        choices=FITS,
        default=None,
        help="how a frame is fitted to the model: centre-crop (default) or stretch",
    )
    parser.add_argument(
        "--threads", type=int, default=None, metavar="N", help="interpreter threads (default: all cores)"
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIME_CHOICES,
        default="auto",
        help="inference runtime; auto (default) picks the fastest one this machine and "
        "bundle allow: tensorrt, edgetpu, litert, onnx",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL_OR_BUNDLE", help="bundle directory or .tflite file")
    parser.add_argument("paths", metavar="PATH", nargs="+", help="image files or folders of images")
    add_model_arguments(parser)
    parser.add_argument("--top-k", type=int, default=3, metavar="K", help="classes to show per image (default 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object a line instead of a table")
    parser.add_argument("--model-file", metavar="NAME", help="bundle variant to run, e.g. model_fp16.tflite")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="T",
        help="a best score under T (0..1) prints 'unknown' instead of a label (default: the bundle's "
        "per-class thresholds from 'export --target-precision', else none)",
    )


UNKNOWN = "unknown"


def _verdict(classifier: Classifier, best: Prediction, threshold: float | None) -> str | None:
    """None when ``best`` is accepted, else why not (its label and score, and the threshold it missed)."""
    if classifier.accepted(best, threshold):
        return None
    limit = threshold if threshold is not None else classifier.thresholds[best.index]
    return f"below threshold {limit:.2f}: best {best.label} {best.score:.2f}"


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise EdgesightError("--top-k must be at least 1")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise UsageError(f"--threshold {args.threshold:g}: expected a score 0..1")
    max_pixels = max_image_pixels()  # a bad $EDGESIGHT_MAX_IMAGE_PIXELS: one line, exit 2, before any work
    images = list_images(args.paths)
    t0 = time.perf_counter()
    classifier = Classifier.open(
        args.model,
        args.labels,
        num_threads=args.threads,
        fit=args.crop,
        top_k=args.top_k,
        model_file=args.model_file,
        runtime=args.runtime,
    )
    load_ms = (time.perf_counter() - t0) * 1e3
    failures = 0
    out = sys.stdout
    if not args.json:
        print(
            f"# {classifier.spec.model_path} on {classifier.runtime.name} {classifier.runtime.version}, "
            f"{classifier.contract.height}x{classifier.contract.width} {classifier.contract.dtype}, "
            f"fit={classifier.contract.fit}, loaded in {load_ms:.0f} ms",
            file=out,
        )
    for path in images:
        t_read = time.perf_counter()
        try:
            frame = read_image(path, max_pixels=max_pixels)
        except EdgesightError as exc:  # missing, not an image, truncated, over the pixel limit
            failures += 1
            print(f"edgesight: error: {exc}", file=sys.stderr)
            continue
        read_ms = (time.perf_counter() - t_read) * 1e3
        result = classifier.classify(frame)
        latency = {"read": round(read_ms, 3), **{k: round(v, 3) for k, v in result.latency_ms.items()}}
        rejected = _verdict(classifier, result.best, args.threshold)
        if args.json:
            verdict = {"label": UNKNOWN if rejected else result.best.label, "accepted": rejected is None}
            row = {"path": str(path), **verdict, "top": [p.as_dict() for p in result.top], "latency_ms": latency}
            out.write(json.dumps(row) + "\n")
        else:
            ranked = "  ".join(f"{p.label} ({p.index}) {p.score:.2f}" for p in result.top)
            if rejected:
                ranked = f"{UNKNOWN} ({rejected})"
            print(f"{path}\t{ranked}\t[{latency['preprocess']:.1f}+{latency['infer']:.1f} ms]", file=out)
        out.flush()
    return 1 if failures else 0  # each unreadable image already had its own error line
