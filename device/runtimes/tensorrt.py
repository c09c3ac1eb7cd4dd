"""NVIDIA TensorRT (Jetson): build an engine from a bundle's ``model.onnx`` and run it on the GPU.

An engine is only valid for the TensorRT version and the GPU it was built on, so engines are
cached inside the bundle under ``engines/`` with a JSON sidecar naming both (and the sha256
of the ONNX model they came from); anything else is refused with the command that rebuilds
it, before TensorRT is asked to deserialize a plan it would reject with a cryptic log line.

Uses the TensorRT Python API (``tensorrt``: Builder, OnnxParser, Runtime, ICudaEngine,
IExecutionContext with the name-based ``execute_async_v3`` of TensorRT 8.5+) and CUDA memory
from NVIDIA's ``cuda-python`` bindings. On JetPack both come with the system Python
(``python3-libnvinfer``; ``pip install cuda-python``): make the venv with ``--system-site-packages``.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..core.bundle import ENGINE_DIR, ONNX_MODEL, ModelSpec, runtime_for_file
from ..core.errors import BundleError, EdgesightError
from ..core.safefile import FileData, read_regular, read_text
from .base import RuntimeOptions, RuntimeUnavailable, TensorInfo, check_model_data

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
INSTALL_HINT = (
    "TensorRT runs on NVIDIA GPUs: on a Jetson it comes with JetPack (sudo apt install "
    "python3-libnvinfer; venv with --system-site-packages), plus pip install cuda-python"
)


# --------------------------------------------------------------------------- imports and CUDA


def import_tensorrt():
    """The ``tensorrt`` module, or RuntimeUnavailable saying how to get it."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise RuntimeUnavailable(f"TensorRT is not installed ({exc}); {INSTALL_HINT}") from None


def import_cudart():
    """cuda-python's runtime API: ``cuda.bindings.runtime`` (12.6+), else the older ``cuda.cudart``."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise RuntimeUnavailable(f"cuda-python is not installed (needed for GPU memory); {INSTALL_HINT}")


def _cuda_check(cudart: Any, result: Any, what: str) -> Any:
    """cuda-python returns ``(error, *values)``: raise on an error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        name = cudart.cudaGetErrorName(err)[1]
        name = name.decode() if isinstance(name, bytes) else str(name)
        raise EdgesightError(f"CUDA {what} failed: {name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_key(cudart: Any | None = None) -> str:
    """A file-name-safe id of GPU 0 and its compute capability, e.g. ``orin-sm87``."""
    cudart = cudart or import_cudart()
    count = _cuda_check(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if not count:
        raise RuntimeUnavailable("no CUDA GPU found; TensorRT needs an NVIDIA GPU (Jetson or desktop)")
    props = _cuda_check(cudart, cudart.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    name = name.split("\x00", 1)[0]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"
    return f"{slug}-sm{props.major}{props.minor}"


class TrtLogger:
    """Build the TensorRT logger as an ``ILogger`` subclass that writes to :mod:`logging`.

    TensorRT's stock logger prints to stderr, which would break the CLI's one-line errors; this
    one keeps the last error so it can go into the message the user sees.
    """

    def __new__(cls, trt: Any) -> Any:  # an instance of a subclass of trt.ILogger built here
        class _Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity: Any, msg: str) -> None:  # called by TensorRT
                # Errors reach the user inside the exception message; -v shows the rest.
                if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                    self.errors.append(str(msg).strip())
                    log.info("TensorRT error: %s", msg)
                elif severity == trt.ILogger.Severity.WARNING:
                    log.info("TensorRT warning: %s", msg)
                else:
                    log.debug("TensorRT: %s", msg)

        return _Logger()


# --------------------------------------------------------------------------- engine cache


@dataclass(frozen=True)
class EngineInfo:
    """What an engine was built for: read from the JSON sidecar beside the ``.engine`` file."""

    path: Path
    tensorrt_version: str
    device: str
    precision: str
    onnx_sha256: str
    built: str

    @classmethod
    def read(cls, engine_path: Path) -> EngineInfo | None:
        sidecar = engine_path.with_suffix(".json")
        if not sidecar.exists():
            return None
        try:
            data = json.loads(read_text(sidecar, what="engine description", follow_symlinks=False))
            return cls(
                engine_path,
                str(data["tensorrt_version"]),
                str(data["device"]),
                str(data["precision"]),
                str(data.get("onnx_sha256", "")),
                str(data.get("built", "")),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise BundleError(f"{sidecar}: unreadable engine description ({exc})") from None

    def write(self) -> None:
        data = {
            "tensorrt_version": self.tensorrt_version,
            "device": self.device,
            "precision": self.precision,
            "onnx_sha256": self.onnx_sha256,
            "built": self.built,
            "engine": self.path.name,
        }
        self.path.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def engine_path(bundle_dir: Path, tensorrt_version: str, device: str, precision: str) -> Path:
    """Where ``build-engine`` caches the engine for this TensorRT version, GPU and precision."""
    return Path(bundle_dir) / ENGINE_DIR / f"model.trt{tensorrt_version}.{device}.{precision}.engine"


def cached_engines(bundle_dir: Path) -> list[EngineInfo]:
    """Every described engine in the bundle, newest first."""
    folder = Path(bundle_dir) / ENGINE_DIR
    found = [info for path in sorted(folder.glob("*.engine")) if (info := EngineInfo.read(path))]
    return sorted(found, key=lambda info: info.built, reverse=True)


def mismatch(info: EngineInfo, tensorrt_version: str, device: str, onnx_sha256: str | None) -> str | None:
    """Why an engine cannot be used here (None when it can)."""
    if info.tensorrt_version != tensorrt_version:
        return f"built for TensorRT {info.tensorrt_version}, this is TensorRT {tensorrt_version}"
    if info.device != device:
        return f"built on {info.device}, this GPU is {device}"
    if onnx_sha256 and info.onnx_sha256 and info.onnx_sha256 != onnx_sha256:
        return "built from another model.onnx than the bundle's"
    return None


# --------------------------------------------------------------------------- running an engine


class TensorRTRuntime:
    """One deserialized engine with its execution context, device buffers and CUDA stream."""

    def __init__(self, model: FileData, num_threads: int | None = None) -> None:
        check_model_data(model)
        model_path = model.path
        trt = import_tensorrt()
        self._cudart = cudart = import_cudart()
        self.name = "tensorrt"
        self.version = trt.__version__
        self.model_path = model_path
        device = device_key(cudart)
        info = EngineInfo.read(model_path)
        if info is not None:
            reason = mismatch(info, trt.__version__, device, None)
            if reason:
                raise BundleError(f"{model_path}: engine {reason}; rebuild it with edgesight build-engine BUNDLE")
        self._logger: Any = TrtLogger(trt)
        self._trt_runtime = trt.Runtime(self._logger)
        self._engine = self._trt_runtime.deserialize_cuda_engine(model.data)
        if self._engine is None:
            detail = self._logger.errors[-1] if self._logger.errors else "deserialization failed"
            raise BundleError(
                f"{model_path}: not an engine this TensorRT {trt.__version__} can load ({detail}); "
                f"rebuild it with edgesight build-engine BUNDLE"
            )
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(
                f"{model_path}: expected one input and one output tensor, found {len(inputs)} and {len(outputs)}"
            )
        self._input_name, self._output_name = inputs[0], outputs[0]
        shape = tuple(1 if d < 0 else int(d) for d in self._engine.get_tensor_shape(self._input_name))
        if len(shape) != 4 or shape[3] != 3:
            raise BundleError(f"{model_path}: input shape {list(shape)} is not an image [1,H,W,3]")
        self._context.set_input_shape(self._input_name, shape)
        out_shape = tuple(int(d) for d in self._context.get_tensor_shape(self._output_name))
        in_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._input_name)))
        out_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._output_name)))
        self.input = TensorInfo(shape, in_dtype.name)
        self.output = TensorInfo(out_shape, out_dtype.name)
        self._host_out = np.empty(out_shape, out_dtype)
        self._in_bytes = int(np.prod(shape)) * in_dtype.itemsize
        self._stream = _cuda_check(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._d_in = _cuda_check(cudart, cudart.cudaMalloc(self._in_bytes), "cudaMalloc")
        self._d_out = _cuda_check(cudart, cudart.cudaMalloc(self._host_out.nbytes), "cudaMalloc")
        self._context.set_tensor_address(self._input_name, int(self._d_in))
        self._context.set_tensor_address(self._output_name, int(self._d_out))
        log.info("TensorRT %s engine %s on %s", self.version, model_path.name, device)

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Copy the input to the GPU, enqueue the engine, copy the output back, wait."""
        cudart = self._cudart
        host_in = np.ascontiguousarray(tensor, dtype=self.input.dtype)
        kind = cudart.cudaMemcpyKind
        _cuda_check(
            cudart,
            cudart.cudaMemcpyAsync(
                self._d_in, host_in.ctypes.data, self._in_bytes, kind.cudaMemcpyHostToDevice, self._stream
            ),
            "cudaMemcpyAsync",
        )
        if not self._context.execute_async_v3(int(self._stream)):
            raise EdgesightError(f"{self.model_path}: TensorRT execution failed")
        _cuda_check(
            cudart,
            cudart.cudaMemcpyAsync(
                self._host_out.ctypes.data,
                self._d_out,
                self._host_out.nbytes,
                kind.cudaMemcpyDeviceToHost,
                self._stream,
            ),
            "cudaMemcpyAsync",
        )
        _cuda_check(cudart, cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return self._host_out[0].copy()

    def close(self) -> None:
        """Free the device buffers and the stream (also done when the object is collected)."""
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for ptr in (getattr(self, "_d_in", None), getattr(self, "_d_out", None)):
            if ptr is not None:
                cudart.cudaFree(ptr)
        if getattr(self, "_stream", None) is not None:
            cudart.cudaStreamDestroy(self._stream)
        self._cudart = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: CUDA may already be gone
            pass


@dataclass(frozen=True)
class TensorRTOptions(RuntimeOptions):
    """Nothing to choose at run time: precision and workspace were fixed when the engine was built."""


class TensorRTBackend:
    """The ``tensorrt`` entry of the registry.

    It reads the bundle's ``model.onnx`` only to build an engine (``edgesight build-engine``);
    at run time it loads an engine under ``engines/``, which the device built itself and the
    manifest cannot list, so it is read safely (a regular file, no symlink) but not hashed; its
    sidecar names the sha256 of the ``model.onnx`` it came from.
    """

    name = "tensorrt"
    bundle_file = ONNX_MODEL
    options_type = TensorRTOptions

    def unavailable_reason(self) -> str | None:
        """None when TensorRT, cuda-python and a GPU are all present, else what is missing."""
        try:
            import_tensorrt()
            device_key()
        except EdgesightError as exc:
            return str(exc)
        return None

    def model_for(self, spec: ModelSpec) -> Path:
        """The newest engine in the bundle built for this TensorRT version and GPU (or a bare engine).

        Raises:
            RuntimeUnavailable: no TensorRT/GPU here, or no matching engine (says how to build one).
        """
        path = Path(spec.model_path)
        if runtime_for_file(path.name) == self.name:
            return path
        if spec.bundle_dir is None:
            raise BundleError(f"{path}: the tensorrt runtime runs .engine files built by edgesight build-engine")
        trt = import_tensorrt()
        device = device_key()
        onnx_entry = spec.manifest.get("files", {}).get(self.bundle_file)
        onnx_sha = onnx_entry.get("sha256") if isinstance(onnx_entry, dict) else onnx_entry
        stale = []
        for info in cached_engines(spec.bundle_dir):
            reason = mismatch(info, trt.__version__, device, onnx_sha)
            if reason is None:
                return info.path
            stale.append(f"{info.path.name} ({reason})")
        hint = f"run: edgesight build-engine {spec.bundle_dir}"
        if stale:
            raise RuntimeUnavailable(
                f"{spec.bundle_dir}/{ENGINE_DIR}: no usable engine: {'; '.join(stale)}; {hint}", warn=True
            )
        raise RuntimeUnavailable(
            f"{spec.bundle_dir}: no TensorRT engine for TensorRT {trt.__version__} on {device}; {hint}"
        )

    def open(self, model: FileData, num_threads: int | None, options: TensorRTOptions) -> TensorRTRuntime:
        return TensorRTRuntime(model, num_threads=num_threads)


BACKEND = TensorRTBackend()


# --------------------------------------------------------------------------- building an engine


def _calibrator(trt: Any, cudart: Any, batches: Iterable[np.ndarray], cache_path: Path):
    """An INT8 entropy calibrator fed with preprocessed frames (TensorRT pulls them one by one)."""

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = iter(batches)
            self.device: Any = None
            self.count = 0

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            batch = np.ascontiguousarray(batch, dtype=np.float32)
            if self.device is None:
                self.device = _cuda_check(cudart, cudart.cudaMalloc(batch.nbytes), "cudaMalloc")
            _cuda_check(
                cudart,
                cudart.cudaMemcpy(
                    self.device, batch.ctypes.data, batch.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
                ),
                "cudaMemcpy",
            )
            self.count += 1
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.exists() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.write_bytes(bytes(cache))

    return _Calibrator()


def build_engine(
    onnx_model: FileData | Path,
    out_path: Path,
    precision: str = "fp16",
    *,
    onnx_sha256: str = "",
    calibration: Iterable[np.ndarray] | None = None,
    workspace_mib: int = 1024,
) -> EngineInfo:
    """Parse ``onnx_path``, build a serialized engine at ``out_path`` and describe it in a sidecar.

    The steps: parse the ONNX model into a network, configure the builder (workspace, FP16, a
    fixed-batch profile), add INT8 calibration when asked, build, then write the engine and its
    sidecar atomically.

    Args:
        onnx_model: the verified bytes of the bundle's ``model.onnx`` (a path is read safely once).
        precision: fp32, fp16 (what a Jetson should use) or int8 (needs ``calibration``:
            preprocessed float32 [1,H,W,3] batches from representative frames).
        workspace_mib: builder scratch memory; Jetsons share it with the CPU, so keep it modest.

    Returns:
        The engine's :class:`EngineInfo` (version, device, precision).
    """
    if precision not in PRECISIONS:
        raise EdgesightError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    onnx = onnx_model if isinstance(onnx_model, FileData) else read_regular(Path(onnx_model))
    trt = import_tensorrt()
    cudart = import_cudart()
    device = device_key(cudart)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    logger: Any = TrtLogger(trt)
    builder = trt.Builder(logger)
    network = _parse_onnx(trt, builder, logger, onnx)
    config, profile = _builder_config(trt, builder, network, precision, workspace_mib)
    calibrator = None
    if precision == "int8":
        calibrator = _add_int8(trt, cudart, builder, config, profile, calibration, out_path.with_suffix(".calib"))
    log.info(
        "building a %s TensorRT %s engine for %s from %s (this takes minutes on a Jetson)",
        precision,
        trt.__version__,
        device,
        onnx.path,
    )
    serialized = _build(builder, network, config, calibrator, cudart, logger, onnx.path)
    _write_atomically(out_path, serialized)
    info = EngineInfo(
        out_path,
        trt.__version__,
        device,
        precision,
        onnx_sha256,
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    info.write()
    return info


def _parse_onnx(trt: Any, builder: Any, logger: Any, onnx: FileData) -> Any:
    """The TensorRT network for the ONNX bytes; a model the parser refuses is a BundleError naming why."""
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode from TensorRT 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.data):
        errors = "; ".join(str(parser.get_error(i)).strip() for i in range(parser.num_errors)) or "parse failed"
        raise BundleError(f"{onnx.path}: TensorRT's ONNX parser refused it ({errors})")
    return network


def _builder_config(trt: Any, builder: Any, network: Any, precision: str, workspace_mib: int) -> tuple[Any, Any]:
    """The builder config (workspace, FP16 for fp16/int8) and the batch-1 profile, if the input needs one."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if precision in ("fp16", "int8"):
        if not getattr(builder, "platform_has_fast_fp16", True):
            log.warning("this GPU has no fast FP16; the engine will mostly run in FP32")
        config.set_flag(trt.BuilderFlag.FP16)
    tensor = network.get_input(0)
    profile = None
    if any(int(d) < 0 for d in tensor.shape):  # Keras exports a dynamic batch axis: pin it to 1
        fixed = tuple(1 if int(d) < 0 else int(d) for d in tensor.shape)
        profile = builder.create_optimization_profile()
        profile.set_shape(tensor.name, fixed, fixed, fixed)
        config.add_optimization_profile(profile)
    return config, profile


def _add_int8(
    trt: Any,
    cudart: Any,
    builder: Any,
    config: Any,
    profile: Any,
    calibration: Iterable[np.ndarray] | None,
    cache_path: Path,
) -> Any:
    """Switch ``config`` to INT8 with a calibrator over ``calibration`` (its cache at ``cache_path``)."""
    if calibration is None:
        raise EdgesightError("--int8 needs calibration images (--calibration DIR)")
    if not getattr(builder, "platform_has_fast_int8", True):
        log.warning("this GPU has no fast INT8; the engine may be slower than FP16")
    config.set_flag(trt.BuilderFlag.INT8)
    calibrator = _calibrator(trt, cudart, calibration, cache_path)
    config.int8_calibrator = calibrator
    if profile is not None and hasattr(config, "set_calibration_profile"):
        config.set_calibration_profile(profile)
    return calibrator


def _build(builder: Any, network: Any, config: Any, calibrator: Any, cudart: Any, logger: Any, onnx_path: Path) -> Any:
    """The serialized engine; the calibrator's device buffer is freed whatever happens."""
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None and calibrator.device is not None:
            cudart.cudaFree(calibrator.device)
    if serialized is None:
        detail = logger.errors[-1] if logger.errors else "see the log with -v"
        raise EdgesightError(f"{onnx_path}: TensorRT could not build an engine ({detail})")
    if calibrator is not None and calibrator.count == 0:
        raise EdgesightError("INT8 calibration saw no images")
    return serialized


def _write_atomically(out_path: Path, serialized: Any) -> None:
    """Write the engine beside ``out_path`` and rename it in, so a crash never leaves half an engine."""
    tmp = out_path.with_suffix(".engine.tmp")
    with tmp.open("wb") as handle:
        handle.write(serialized)
    tmp.replace(out_path)
