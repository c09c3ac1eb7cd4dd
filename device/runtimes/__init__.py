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

from ..errors import BundleError, UsageError

log = logging.getLogger(__name__)


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
}


def open_runtime(kind: str, model_path: str | Path, num_threads: int | None = None, **options) -> Runtime:
    """Load ``model_path`` with the runtime called ``kind``.

    Raises:
        UsageError: ``kind`` is not a runtime this build knows.
        BundleError: the model file cannot be loaded by that runtime.
    """
    if kind not in RUNTIMES:
        raise UsageError(f"unknown runtime {kind!r}; choose one of {', '.join(sorted(RUNTIMES))}")
    module = importlib.import_module(RUNTIMES[kind], __name__)
    return module.open_runtime(Path(model_path), num_threads=num_threads, **options)


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
    return raw.astype(np.float32, copy=False)


__all__ = ["Runtime", "TensorInfo", "RUNTIMES", "open_runtime", "check_model_file", "dequantize"]
