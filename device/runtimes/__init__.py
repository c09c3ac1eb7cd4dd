"""Inference runtimes behind one small interface; one module per runtime, heavy imports inside it.

Adding an accelerator means adding one module here and one line to ``RUNTIMES``.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..core.errors import BundleError, EdgesightError, UsageError

log = logging.getLogger(__name__)


class RuntimeUnavailable(EdgesightError):
    """This machine cannot run the runtime: library not installed, no accelerator attached, no engine.

    ``runtime = "auto"`` skips a runtime that raises this and tries the next one; an explicitly
    chosen runtime turns it into the one-line error the user sees. ``warn`` marks a reason that
    ``auto`` should still report (the bundle was made for this runtime, e.g. a stale engine).
    """

    def __init__(self, message: str, *, warn: bool = False) -> None:
        super().__init__(message)
        self.warn = warn


@dataclass(frozen=True)
class TensorInfo:
    """Shape, dtype and quantization of one model input or output (scale 0 = not quantized)."""

    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0


class Runtime(Protocol):
    """A loaded model that turns one input tensor into one output row."""

    name: str  # e.g. "ai_edge_litert"
    version: str
    input: TensorInfo
    output: TensorInfo

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Run the model on a batch-of-one tensor; return the raw (still quantized) output row."""
        ...


# Name in config -> module that provides ``open_runtime(model_path, num_threads, **options)``.
RUNTIMES: dict[str, str] = {
    "litert": ".litert",
    "edgetpu": ".edgetpu",
    "onnx": ".onnx",
    "tensorrt": ".tensorrt",
}

# What ``runtime = "auto"`` tries, fastest first: a Jetson GPU engine, then the Coral TPU, then
# the int8 model on the CPU (XNNPACK), then ONNX Runtime (float on the CPU, the slowest here).
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "edgetpu", "litert", "onnx")
RUNTIME_CHOICES: tuple[str, ...] = ("auto", *RUNTIMES)


def open_runtime(kind: str, model_path: str | Path, num_threads: int | None = None, **options) -> Runtime:
    """Load ``model_path`` with the runtime called ``kind``.

    Raises:
        UsageError: ``kind`` is not a runtime this build knows.
        BundleError: the model file cannot be loaded by that runtime.
    """
    return runtime_module(kind).open_runtime(Path(model_path), num_threads=num_threads, **options)


def runtime_module(kind: str):
    """The module implementing runtime ``kind`` (imported on first use, so a Pi never loads onnxruntime)."""
    if kind not in RUNTIMES:
        raise UsageError(f"unknown runtime {kind!r}; choose one of {', '.join(RUNTIME_CHOICES)}")
    return importlib.import_module(RUNTIMES[kind], __name__)


def unavailable_reason(kind: str) -> str | None:
    """None when runtime ``kind`` can run on this machine, else one line saying what is missing."""
    return runtime_module(kind).unavailable_reason()


def available_runtimes(spec=None) -> list[str]:
    """Runtimes usable on this machine, fastest first; with a ``ModelSpec``, only those it has a model for.

    ``edgesight bench`` uses this to compare every runtime a bundle can run on, in one table.
    """
    found = []
    for kind in AUTO_ORDER:
        try:
            if unavailable_reason(kind) is not None:
                continue
            if spec is not None:
                runtime_module(kind).model_for(spec)
        except EdgesightError as exc:
            log.debug("runtime %s not available: %s", kind, exc)
            continue
        found.append(kind)
    return found


def check_model_file(path: Path) -> None:
    """Refuse a missing or obviously non-model file with a line naming it."""
    if not path.exists():
        raise BundleError(f"{path}: no such model file")
    if not path.is_file():
        raise BundleError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise BundleError(f"{path}: empty model file")


def dequantize(raw: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Map a quantized output row to float scores (0..1 for a softmax output)."""
    if info.scale:
        return (raw.astype(np.float32) - info.zero_point) * info.scale
    if info.dtype in ("uint8", "int8"):
        # An integer output that lost its quantization (tf2onnx of a quantized TFLite model):
        # spread the integer range over 0..1 so scores and thresholds keep their meaning.
        low = np.iinfo(info.dtype).min
        return (raw.astype(np.float32) - low) / 255.0
    return raw.astype(np.float32, copy=False)


__all__ = [
    "Runtime",
    "RuntimeUnavailable",
    "TensorInfo",
    "RUNTIMES",
    "AUTO_ORDER",
    "RUNTIME_CHOICES",
    "open_runtime",
    "runtime_module",
    "unavailable_reason",
    "available_runtimes",
    "check_model_file",
    "dequantize",
]
