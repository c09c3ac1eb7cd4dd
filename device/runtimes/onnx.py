"""ONNX Runtime on the CPU: runs a bundle's ``model.onnx`` (the model a Jetson turns into a TensorRT engine).

It is the reference for the TensorRT path that can run anywhere: the exporter checks the ONNX
model against the float TFLite model with it, and a machine without an accelerator can serve
the ONNX model too. The ``onnxruntime`` import lives here, so a Pi that never asks for this
runtime never loads it.
"""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.bundle import ONNX_MODEL, ModelSpec, runtime_for_file
from ..core.errors import BundleError
from ..core.safefile import FileData
from .base import RuntimeOptions, RuntimeUnavailable, TensorInfo, check_model_data

log = logging.getLogger(__name__)

# ONNX element type strings -> NumPy dtype names.
_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(double)": "float64",
}
INSTALL_HINT = "pip install onnxruntime (or onnxruntime-gpu on a CUDA machine)"


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeUnavailable(f"ONNX Runtime is not installed ({exc}): {INSTALL_HINT}") from None
    return onnxruntime


def _static_shape(shape: list, where: Path) -> tuple[int, ...]:
    """Dynamic axes (strings or None) are the batch axis in practice: pin them to 1."""
    dims = tuple(d if isinstance(d, int) and d > 0 else 1 for d in shape)
    if len(dims) != 4:
        raise BundleError(f"{where}: input shape {shape} is not an image [1,H,W,3] or [1,3,H,W]")
    return dims


class OnnxRuntime:
    """One ``onnxruntime.InferenceSession``; NHWC to the caller even when the model is NCHW.

    Keras exports NHWC; models from PyTorch are usually NCHW. Reporting NHWC and transposing
    inside :meth:`infer` keeps the one preprocessing definition unchanged for both.
    """

    def __init__(
        self, model: FileData, num_threads: int | None = None, providers: tuple[str, ...] | None = None
    ) -> None:
        check_model_data(model)
        model_path = model.path
        ort = _import_onnxruntime()
        self.name = "onnxruntime"
        self.version = ort.__version__ if hasattr(ort, "__version__") else importlib.metadata.version("onnxruntime")
        self.model_path = model_path
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: keep stderr to the CLI's one line
        if num_threads:
            options.intra_op_num_threads = num_threads
        available = ort.get_available_providers()
        wanted = [p for p in (providers or ["CPUExecutionProvider"]) if p in available] or ["CPUExecutionProvider"]
        try:
            # from the verified bytes, not the path: what runs is what was hashed
            self._session = ort.InferenceSession(model.data, sess_options=options, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"{model_path}: not a loadable ONNX model ({reason})") from None
        self.providers = self._session.get_providers()
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(
                f"{model_path}: expected one input and one output tensor, found {len(inputs)} and {len(outputs)}"
            )
        shape = _static_shape(inputs[0].shape, model_path)
        self._channels_first = shape[1] == 3 and shape[3] != 3
        if self._channels_first:
            shape = (shape[0], shape[2], shape[3], shape[1])
        elif shape[3] != 3:
            raise BundleError(f"{model_path}: input shape {inputs[0].shape} is not an image [1,H,W,3] or [1,3,H,W]")
        input_dtype = _DTYPES.get(inputs[0].type)
        if input_dtype is None:
            raise BundleError(f"{model_path}: input type {inputs[0].type} is not supported")
        self.input = TensorInfo(shape, input_dtype)
        out_shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in outputs[0].shape)
        self.output = TensorInfo(out_shape, _DTYPES.get(outputs[0].type, "float32"))
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name
        log.info("onnxruntime %s: %s on %s", self.version, model_path, ", ".join(self.providers))

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Run the session on a [1,H,W,3] tensor and return the first output row."""
        if self._channels_first:
            tensor = np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))
        return self._session.run([self._output_name], {self._input_name: tensor})[0][0]


@dataclass(frozen=True)
class OnnxOptions(RuntimeOptions):
    """ONNX Runtime execution providers to try, in order (those not installed are skipped)."""

    providers: tuple[str, ...] = ("CPUExecutionProvider",)


class OnnxBackend:
    """The ``onnx`` entry of the registry."""

    name = "onnx"
    bundle_file = ONNX_MODEL
    options_type = OnnxOptions

    def unavailable_reason(self) -> str | None:
        """None when onnxruntime imports here, else why not."""
        try:
            _import_onnxruntime()
        except RuntimeUnavailable as exc:
            return str(exc)
        return None

    def model_for(self, spec: ModelSpec) -> Path:
        """The bundle's ``model.onnx`` (written by ``edgesight export --onnx``), or a bare ``.onnx``."""
        path = Path(spec.model_path)
        if runtime_for_file(path.name) == self.name:
            return path
        if spec.bundle_dir is None:
            raise BundleError(f"{path}: the onnx runtime runs .onnx models")
        return spec.variant(ONNX_MODEL)

    def open(self, model: FileData, num_threads: int | None, options: OnnxOptions) -> OnnxRuntime:
        return OnnxRuntime(model, num_threads=num_threads, providers=options.providers)


BACKEND = OnnxBackend()
