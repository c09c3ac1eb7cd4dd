"""``edgesight info``: what a bundle or model is, what it expects, and whether its files are intact."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ..classify import Classifier
from ..core.bundle import ONNX_MODEL
from ..runtimes import RUNTIME_CHOICES


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL_OR_BUNDLE", help="bundle directory or .tflite file")
    parser.add_argument("--labels", metavar="FILE", help="labels file for a bare .tflite")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--runtime",
        choices=RUNTIME_CHOICES,
        default="auto",
        help="load the model on this runtime (default auto: the fastest available)",
    )


def describe(classifier: Classifier) -> dict:
    """Everything a person or a script needs to know about a loaded model."""
    runtime = classifier.runtime
    contract = classifier.contract
    spec = classifier.spec
    return {
        "model": str(spec.model_path),
        "bundle": str(spec.bundle_dir) if spec.bundle_dir else None,
        "hashes_verified": spec.bundle_dir is not None,
        "runtime": {"name": runtime.name, "version": runtime.version},
        "input": {
            "shape": list(runtime.input.shape),
            "dtype": runtime.input.dtype,
            "quantization": [runtime.input.scale, runtime.input.zero_point],
            "fit": contract.fit,
            "mean": contract.mean,
            "std": contract.std,
        },
        "output": {
            "shape": list(runtime.output.shape),
            "dtype": runtime.output.dtype,
            "quantization": [runtime.output.scale, runtime.output.zero_point],
            "classes": len(classifier.labels),
            "background_index": classifier.background_index,
        },
        "labels_preview": list(classifier.labels[:5]),
        "manifest": spec.manifest or None,
        "agreement": agreement_lines(spec.manifest) if spec.manifest else [],
    }


def _figure(value: Any, digits: int) -> str | None:
    """A measured number, or None when it is missing or NaN (nothing to compare on)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return f"{value:.{digits}f}"


def agreement_lines(manifest: dict[str, Any]) -> list[str]:
    """How far each exported file agrees with its reference, as measured at export; "not measured" if not.

    ``metrics.agreement_with_float`` compares each quantized LiteRT model with the float one;
    the manifest's ``onnx`` section compares ``model.onnx`` (ONNX Runtime) with a TFLite model.
    """
    lines = []
    metrics = manifest.get("metrics") or {}
    for variant, figures in (metrics.get("agreement_with_float") or {}).items():
        top1 = _figure(figures.get("top1_agreement"), 3) if isinstance(figures, dict) else None
        diff = _figure(figures.get("max_score_diff"), 4) if isinstance(figures, dict) else None
        if top1 is None:
            lines.append(f"{variant} vs float: not measured")
        else:
            lines.append(f"{variant} vs float: top-1 {top1}, max score difference {diff or '?'}")
    if "agreement_with_float" not in metrics:
        lines.append("quantized vs float: not measured")
    onnx = manifest.get("onnx")
    if isinstance(onnx, dict):
        top1 = _figure(onnx.get("top1_agreement"), 3)
        diff = _figure(onnx.get("max_score_diff"), 4)
        images = onnx.get("images", "?")
        lines.append(
            f"{ONNX_MODEL} vs TFLite: top-1 {top1}, max score difference {diff or '?'} on {images} images"
            if top1 is not None
            else f"{ONNX_MODEL} vs TFLite: not measured"
        )
    elif ONNX_MODEL in manifest.get("files", {}):
        lines.append(f"{ONNX_MODEL} vs TFLite: not measured")
    return lines


def run(args: argparse.Namespace) -> int:
    classifier = Classifier.open(args.model, args.labels, num_threads=1, runtime=args.runtime)
    info = describe(classifier)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"model:    {info['model']}")
    if info["bundle"]:
        manifest = info["manifest"]
        print(f"bundle:   {info['bundle']}  ({manifest['name']} {manifest['version']}, created {manifest['created']})")
        print("files:    " + ", ".join(f"{name} ok" for name in manifest["files"]) + "  (sha256 verified)")
        arch = manifest.get("architecture", {})
        if arch:
            print("arch:     " + ", ".join(f"{k}={v}" for k, v in arch.items()))
        for variant, figures in (manifest.get("metrics") or {}).items():
            if isinstance(figures, dict) and variant != "agreement_with_float":
                shown = ", ".join(
                    f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in figures.items()
                    if not isinstance(v, (dict, list))
                )
                if shown:
                    print(f"metrics:  {variant}: {shown}")
        for line in agreement_lines(manifest):
            print(f"agree:    {line}")
    print(f"runtime:  {info['runtime']['name']} {info['runtime']['version']}")
    i, o = info["input"], info["output"]
    print(
        f"input:    {i['shape']} {i['dtype']} quant={tuple(i['quantization'])} fit={i['fit']} "
        f"normalise=(x-{i['mean']:g})/{i['std']:g}"
    )
    print(
        f"output:   {o['shape']} {o['dtype']} quant={tuple(o['quantization'])} classes={o['classes']} "
        f"background_index={o['background_index']}"
    )
    print(f"labels:   {', '.join(info['labels_preview'])}{', ...' if o['classes'] > 5 else ''}")
    return 0
