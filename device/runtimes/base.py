"""The types every runtime shares: a loaded model, a kind of runtime, its options, the unavailable error.

They live apart from ``runtimes/__init__`` (the registry, which imports each backend module on
demand) so that the backend modules import them without importing the package that loads them.
No NumPy here: the registry and the config read these names cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..core.errors import BundleError, EdgesightError

if TYPE_CHECKING:
    import numpy as np

    from ..core.bundle import ModelSpec
    from ..core.safefile import FileData


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
    model_path: Path  # the file whose (verified) bytes it runs
    input: TensorInfo
    output: TensorInfo

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Run the model on a batch-of-one tensor; return the raw (still quantized) output row."""
        ...


@dataclass(frozen=True)
class RuntimeOptions:
    """Base of each backend's options: a small frozen dataclass per runtime, defaults = config defaults."""


class RuntimeBackend(Protocol):
    """One kind of runtime, as the registry knows it."""

    name: str  # the name in config and on the command line
    bundle_file: str  # the bundle file it reads, from core.bundle's table (TensorRT: builds from)
    options_type: type[RuntimeOptions]

    def unavailable_reason(self) -> str | None:
        """None when it can run on this machine now, else one line saying what is missing."""
        ...

    def model_for(self, spec: ModelSpec) -> Path:
        """The file of ``spec`` this runtime runs; RuntimeUnavailable/BundleError when there is none."""
        ...

    def open(self, model: FileData, num_threads: int | None, options: Any) -> Runtime:
        """Load the (already verified) bytes of ``model``; ``options`` is an ``options_type``."""
        ...


def check_model_data(model: FileData) -> None:
    """Refuse an empty model file with a line naming it (missing and non-regular files never get here)."""
    if not model.data:
        raise BundleError(f"{model.path}: empty model file")
