"""``edgesight build-engine``: turn a bundle's ``model.onnx`` into a TensorRT engine on this Jetson.

Engines only run on the TensorRT version and GPU that built them, so this runs on the device
itself (minutes on a Jetson) and caches the result in ``BUNDLE/engines/``, keyed by both.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..classify import contract_for
from ..core.bundle import ONNX_MODEL, load_bundle
from ..core.errors import BundleError, UsageError
from ..core.preprocess import list_images, prepare, read_image
from ..runtimes import TensorInfo, open_runtime
from ..runtimes import tensorrt as trt_runtime


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", help="bundle directory exported with --onnx")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument(
        "--fp16",
        dest="precision",
        action="store_const",
        const="fp16",
        help="allow FP16 kernels (recommended on a Jetson: about 2x faster, same top-1)",
    )
    precision.add_argument(
        "--int8",
        dest="precision",
        action="store_const",
        const="int8",
        help="INT8 with entropy calibration on --calibration images",
    )
    parser.set_defaults(precision="fp32")
    parser.add_argument("--calibration", metavar="DIR", help="folder of representative images for --int8")
    parser.add_argument(
        "--calibration-images", type=int, default=100, metavar="N", help="at most N calibration images (default 100)"
    )
    parser.add_argument(
        "--workspace", type=int, default=1024, metavar="MIB", help="builder workspace memory in MiB (default 1024)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if an up-to-date engine is cached")


def calibration_batches(paths: list[Path], spec, shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """Float32 [1,H,W,3] tensors made with the bundle's own preprocessing (what the engine will see)."""
    contract = contract_for(spec, TensorInfo(shape, "float32"))
    for path in paths:
        yield prepare(read_image(path), contract)


def run(args: argparse.Namespace) -> int:
    if args.workspace < 16:
        raise UsageError("--workspace must be at least 16 MiB")
    if args.calibration and args.precision != "int8":
        raise UsageError("--calibration only applies with --int8")
    if args.precision == "int8" and not args.calibration:
        raise UsageError("--int8 needs --calibration DIR (a folder of typical camera frames or training photos)")
    bundle = Path(args.bundle)
    spec = load_bundle(bundle)  # verifies every file's size and sha256 first
    if ONNX_MODEL not in spec.manifest["files"]:
        raise BundleError(
            f"{bundle}: bundle has no {ONNX_MODEL}; re-export it with edgesight export RUN_DIR --out {bundle} --onnx"
        )
    onnx_model = spec.read_model(spec.variant(ONNX_MODEL))  # the verified bytes are what TensorRT parses
    onnx_sha = onnx_model.sha256
    trt = trt_runtime.import_tensorrt()
    device = trt_runtime.device_key()
    target = trt_runtime.engine_path(bundle, trt.__version__, device, args.precision)
    for info in trt_runtime.cached_engines(bundle):
        reason = trt_runtime.mismatch(info, trt.__version__, device, onnx_sha)
        if info.path == target and reason is None and not args.force:
            print(
                f"up to date: {target} (TensorRT {info.tensorrt_version}, {info.device}, {info.precision}, "
                f"built {info.built}); --force rebuilds it"
            )
            return 0
        if reason is not None:
            print(
                f"note: {info.path.name} is not usable here ({reason}); "
                f"{'rebuilding it' if info.path == target else 'left in place for the device it was built for'}"
            )
    calibration = None
    if args.precision == "int8":
        images = list_images([args.calibration])[: max(1, args.calibration_images)]
        contract = spec.contract
        if contract is None:  # a bundle always has one; a bare model never gets here
            raise BundleError(f"{bundle}: the manifest has no input contract")
        size = contract.height, contract.width
        calibration = calibration_batches(images, spec, (1, *size, 3))
    t0 = time.perf_counter()
    info = trt_runtime.build_engine(
        onnx_model, target, args.precision, onnx_sha256=onnx_sha, calibration=calibration, workspace_mib=args.workspace
    )
    seconds = time.perf_counter() - t0
    engine = open_runtime("tensorrt", target)  # prove it loads and runs before saying so
    engine.infer(np.zeros(engine.input.shape, engine.input.dtype))
    print(
        f"engine: {target} ({target.stat().st_size / 2**20:.1f} MiB, TensorRT {info.tensorrt_version}, "
        f"{info.device}, {info.precision}, built in {seconds:.1f} s, verified)"
    )
    print(f'run it: edgesight predict {bundle} IMAGE --runtime tensorrt   (or runtime = "tensorrt" in the config)')
    return 0
