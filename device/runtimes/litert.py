"""LiteRT on the CPU: ai_edge_litert, else tflite_runtime, else tensorflow.lite.

LiteRT (ai-edge-litert) is the maintained successor of tflite-runtime and works with NumPy 2;
old Pi OS images may only have tflite_runtime; a workstation always has tensorflow.lite.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..core.bundle import DEFAULT_MODEL, ModelSpec, runtime_for_file
from ..core.errors import BundleError
from ..core.safefile import FileData
from .base import RuntimeOptions, TensorInfo, check_model_data

log = logging.getLogger(__name__)

# (module holding Interpreter, distribution that carries its version)
_CANDIDATES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite", "tensorflow"),
)


@dataclass(frozen=True)
class LiteRTModule:
    """The interpreter implementation found on this machine."""

    name: str
    version: str
    interpreter_class: Callable[..., Any]
    load_delegate: Callable[..., Any] | None


@lru_cache(maxsize=1)
def find_litert() -> LiteRTModule:
    """Import the first available LiteRT flavour (once) and log which one is in use."""
    errors = []
    for module_name, dist in _CANDIDATES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{module_name}: {exc}")
            continue
        if module_name == "tensorflow.lite":
            interpreter_class = module.Interpreter
            load_delegate = module.experimental.load_delegate
        else:
            interpreter_class = module.Interpreter
            load_delegate = getattr(module, "load_delegate", None)
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        name = module_name.split(".")[0]
        if name == "tensorflow":
            name = "tensorflow.lite"
        log.info("inference runtime: %s %s", name, version)
        return LiteRTModule(name, version, interpreter_class, load_delegate)
    raise BundleError("no LiteRT runtime installed: pip install 'edgesight[device]' (" + "; ".join(errors) + ")")


@contextmanager
def quiet_native_stderr():
    """Silence the C++ runtime's INFO lines (e.g. "Created XNNPACK delegate") while loading.

    Errors still surface as Python exceptions, and keeping stderr to the one line the CLI
    prints on failure is part of the contract. Set EDGESIGHT_NATIVE_LOGS=1 to see them.
    """
    if os.environ.get("EDGESIGHT_NATIVE_LOGS"):
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def default_threads() -> int:
    """All cores: XNNPACK scales well to the 4 cores of a Pi 4/5."""
    return max(1, os.cpu_count() or 1)


def _tensor_info(detail: dict) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0)) or (0.0, 0)
    return TensorInfo(
        tuple(int(x) for x in detail["shape"]), np.dtype(detail["dtype"]).name, float(scale), int(zero_point)
    )


@dataclass(frozen=True)
class LiteRTOptions(RuntimeOptions):
    """LiteRT on the CPU has nothing to choose beyond the thread count (XNNPACK is LiteRT's default)."""


class LiteRTRuntime:
    """One LiteRT interpreter; not thread-safe, so the pipeline gives each worker its own.

    It is built from the model's bytes (``model_content``), never from its path, so it runs
    exactly what the bundle check hashed.
    """

    def __init__(
        self,
        model: FileData,
        num_threads: int | None = None,
        delegates: list | None = None,
        name_suffix: str = "",
    ) -> None:
        check_model_data(model)
        model_path = model.path
        found = find_litert()
        self.name = found.name + name_suffix
        self.version = found.version
        self.num_threads = num_threads or default_threads()
        self.model_path = model_path
        self._content = model.data  # the interpreter reads this buffer: keep it alive with it
        try:
            with quiet_native_stderr():
                self._interpreter = found.interpreter_class(
                    model_content=self._content,
                    num_threads=self.num_threads,
                    experimental_delegates=delegates or None,
                )
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"{model_path}: not a loadable TFLite model ({reason})") from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(
                f"{model_path}: expected one input and one output tensor, found {len(inputs)} and {len(outputs)}"
            )
        self.input = _tensor_info(inputs[0])
        self.output = _tensor_info(outputs[0])
        if len(self.input.shape) != 4 or self.input.shape[3] != 3:
            raise BundleError(f"{model_path}: input shape {list(self.input.shape)} is not an image [1,H,W,3]")
        self._input_index = inputs[0]["index"]
        self._output_index = outputs[0]["index"]

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Set the input, invoke, and return a copy of the first output row."""
        self._interpreter.set_tensor(self._input_index, tensor)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output_index)[0]


class LiteRTBackend:
    """The ``litert`` entry of the registry."""

    name = "litert"
    bundle_file = DEFAULT_MODEL
    options_type = LiteRTOptions

    def unavailable_reason(self) -> str | None:
        """None when some LiteRT flavour imports here, else why not."""
        try:
            find_litert()
        except BundleError as exc:
            return str(exc)
        return None

    def model_for(self, spec: ModelSpec) -> Path:
        """The CPU ``.tflite`` of a bundle or bare model: the chosen variant, else the bundle's default.

        An Edge TPU-compiled model holds a custom op the CPU cannot run, so it is never picked here.
        """
        path = Path(spec.model_path)
        if runtime_for_file(path.name) == self.name:
            return path
        if spec.bundle_dir is not None:
            return Path(spec.bundle_dir) / spec.manifest["default_model"]
        raise BundleError(f"{path}: LiteRT runs .tflite models (not Edge TPU-compiled ones)")

    def open(self, model: FileData, num_threads: int | None, options: LiteRTOptions) -> LiteRTRuntime:
        return LiteRTRuntime(model, num_threads=num_threads)


BACKEND = LiteRTBackend()
