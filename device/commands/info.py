"""``edgesight info``: what a bundle or model is, what it expects, and whether its files are intact."""

from __future__ import annotations

import argparse
import json

from ..classify import Classifier
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
    }


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
            if isinstance(figures, dict):
                shown = ", ".join(
                    f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in figures.items()
                    if not isinstance(v, (dict, list))
                )
                print(f"metrics:  {variant}: {shown}")
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
