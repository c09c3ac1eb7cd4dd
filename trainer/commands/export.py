"""``edgesight export RUN_DIR --out BUNDLE_DIR``: quantize, measure on the test split, write the bundle.

Then store self-test probes (test split by default) and sign with ``--sign KEY`` when given.
"""

from __future__ import annotations

import argparse

from ...device.core.bundle import EDGETPU_MODEL, ONNX_MODEL
from ..export import DEFAULT_MAX_PROBES, IO_TYPES, QUANTS, Exported
from .output import say, shown

EXPORT_EXAMPLES = """\
examples:
  edgesight export runs/first --out bundles/first      # int8 (model.tflite), fp16 and float
  edgesight export runs/first --out bundles/coral --quant int8 --edgetpu
  edgesight export runs/first --out bundles/jetson --onnx --name parts --version 1.2
  edgesight export runs/first --out bundles/signed --sign ~/.edgesight/keys/deploy.key
  edgesight export runs/first --out bundles/first --probe photos/checks --max-probes 4
  edgesight info bundles/first                         # check what was written
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXPORT_EXAMPLES
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory made by 'edgesight train'")
    parser.add_argument("--out", metavar="BUNDLE_DIR", required=True, help="bundle directory to write")
    parser.add_argument(
        "--quant",
        action="append",
        choices=QUANTS,
        metavar="|".join(QUANTS),
        help="model precision(s) to write; repeatable (default: all three; the first of int8, fp16, "
        "float given becomes {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--io",
        choices=IO_TYPES,
        default="uint8",
        help="int8 model input/output type (default uint8, as Coral/TFLite examples use)",
    )
    parser.add_argument("--onnx", action="store_true", help=f"also write {ONNX_MODEL} (Jetson/TensorRT, onnxruntime)")
    parser.add_argument(
        "--edgetpu",
        action="store_true",
        help=f"also compile {EDGETPU_MODEL} for a Coral Edge TPU (needs edgetpu_compiler)",
    )
    parser.add_argument("--name", help="bundle name shown by the device (default: the run directory's name)")
    parser.add_argument(
        "--version", help="bundle version string (default: the export time in UTC, e.g. 2025.01.31-1200)"
    )
    parser.add_argument(
        "--dataset",
        metavar="DATASET_DIR",
        help="dataset for calibration and test metrics (default: the one the run was trained on)",
    )
    parser.add_argument("--sign", metavar="KEY", help="sign the bundle with this private deploy.key (mode 600)")
    probes = parser.add_mutually_exclusive_group()
    probes.add_argument(
        "--probe",
        metavar="DIR",
        help="folder of images stored as self-test probes (default: a few per class from the test split)",
    )
    probes.add_argument("--no-probes", action="store_true", help="store no self-test probes")
    parser.add_argument(
        "--max-probes",
        type=int,
        default=DEFAULT_MAX_PROBES,
        metavar="N",
        help=f"self-test probes kept (default {DEFAULT_MAX_PROBES})",
    )
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="do not fit a temperature on the val split (scores stay the raw softmax)",
    )
    parser.add_argument(
        "--target-precision",
        type=float,
        metavar="P",
        help="also store per-class score thresholds reaching precision P (e.g. 0.95) on the val split; "
        "the device reports 'unknown' below them",
    )


def run(args: argparse.Namespace) -> int:
    from ..export import export

    result = export(
        args.run_dir,
        args.out,
        quants=args.quant,
        io=args.io,
        onnx=args.onnx,
        edgetpu=args.edgetpu,
        name=args.name,
        version=args.version,
        dataset_dir=args.dataset,
        probes=not args.no_probes,
        probe_dir=args.probe,
        max_probes=args.max_probes,
        sign_key=args.sign,
        say=say,
        calibrate=not args.no_calibration,
        target_precision=args.target_precision,
    )
    manifest = result.manifest
    metrics = manifest["metrics"]
    print(f"bundle {args.out}: {manifest['name']} {manifest['version']}, default {manifest['default_model']}")
    for filename, entry in manifest["models"].items():
        m = metrics.get(entry["precision"], {})
        acc = f"accuracy {m['accuracy']:.3f}" if "accuracy" in m else "no test images"
        print(
            f"  {filename:<22} {entry['precision']:<5} input {entry['input'][0]} "
            f"q=({entry['input'][1]:g}, {entry['input'][2]})  {acc} on {m.get('images', 0)} test images (LiteRT)"
        )
    if "calibration" in manifest:
        c = manifest["calibration"]
        print(f"  calibrated: temperature {c['temperature']:.3f}, ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f}")
    if "thresholds" in manifest:
        shown_t = ", ".join(f"{shown(k)} {v:.2f}" for k, v in manifest["thresholds"].items())
        print(f"  per-class thresholds for precision {manifest['calibration'].get('target_precision')}: {shown_t}")
    for quant, agree in metrics.get("agreement_with_float", {}).items():
        print(
            f"  {quant} vs float: top-1 agreement {agree['top1_agreement']:.3f}, "
            f"max score difference {agree['max_score_diff']:.3f}"
        )
    if "onnx" in manifest:
        o = manifest["onnx"]
        print(
            f"  {ONNX_MODEL:<22} onnxruntime {o['onnxruntime']} vs the TFLite model on {o['images']} "
            f"test images: top-1 agreement {o['top1_agreement']:.3f}, max score difference {o['max_score_diff']:.4f}"
        )
    if "edgetpu" in manifest:
        t = manifest["edgetpu"]
        print(
            f"  {EDGETPU_MODEL:<22} {t.get('ops_on_tpu', '?')} of {t.get('total_ops', '?')} ops on the Edge TPU "
            f"({t.get('ops_on_cpu', '?')} on the CPU; edgetpu_compiler {t.get('compiler_version', '?')})"
        )
    print(_trust_summary(result, args.out))
    return 0


def _trust_summary(result: Exported, out: str) -> str:
    """How many self-test probes were stored and who signed the bundle (or how to sign it)."""
    probes = f"  self-test: {len(result.probes)} probes from {shown(result.probe_source)}"
    if result.signer:
        return f"{probes}; signed by {result.signer}"
    return f"{probes}; unsigned (sign with: edgesight bundle sign {shown(out)} --key KEY)"
