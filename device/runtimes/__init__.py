"""Inference runtimes behind one small interface; one module per runtime, heavy imports inside it.

Two contracts live here. :class:`Runtime` is a loaded model (``infer`` one tensor). A
:class:`RuntimeBackend` is a kind of runtime: its name, the bundle file it reads (from the one
table in ``core/bundle.py``), why it cannot run on this machine, and ``open`` with its own typed
options. :data:`REGISTRY` lists the backends; the config's and the CLI's choices
(:data:`RUNTIME_CHOICES`) and what ``auto`` tries (:data:`AUTO_ORDER`) derive from it. Adding an
accelerator means one module with a ``BACKEND`` and one line in :data:`REGISTRY`.

This package imports neither NumPy nor any runtime library, so the config can read the names
cheaply; a backend's module is imported on first use (a Pi never loads onnxruntime).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..core.errors import EdgesightError, UsageError
from .base import (
    Runtime,
    RuntimeBackend,
    RuntimeOptions,
    RuntimeUnavailable,
    TensorInfo,
    check_model_data,
)

if TYPE_CHECKING:
    from ..core.bundle import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registered:
    """A registry line: the runtime's name, its module, its place in ``auto`` and one line for help."""

    name: str
    module: str
    auto_rank: int  # 0 is tried first by runtime = "auto"
    summary: str


# The one list of runtimes. ``auto`` tries them fastest first: a Jetson GPU engine, then the
# Coral TPU, then the int8 model on the CPU (XNNPACK), then ONNX Runtime (float on the CPU).
REGISTRY: tuple[Registered, ...] = (
    Registered("litert", ".litert", 2, "LiteRT on the CPU (XNNPACK): model.tflite and its variants"),
    Registered("edgetpu", ".edgetpu", 1, "Coral Edge TPU: model_edgetpu.tflite, CPU fallback when unplugged"),
    Registered("onnx", ".onnx", 3, "ONNX Runtime on the CPU: model.onnx"),
    Registered("tensorrt", ".tensorrt", 0, "NVIDIA TensorRT: an engine built on the device from model.onnx"),
)
RUNTIMES: dict[str, Registered] = {entry.name: entry for entry in REGISTRY}
RUNTIME_NAMES: tuple[str, ...] = tuple(RUNTIMES)
AUTO_ORDER: tuple[str, ...] = tuple(entry.name for entry in sorted(REGISTRY, key=lambda entry: entry.auto_rank))
# What ``[model] runtime`` and ``--runtime`` accept.
RUNTIME_CHOICES: tuple[str, ...] = ("auto", *RUNTIME_NAMES)


def runtime_module(kind: str) -> ModuleType:
    """The module implementing runtime ``kind`` (imported on first use, so a Pi never loads onnxruntime)."""
    if kind not in RUNTIMES:
        raise UsageError(f"unknown runtime {kind!r}; choose one of {', '.join(RUNTIME_CHOICES)}")
    return importlib.import_module(RUNTIMES[kind].module, __name__)


def backend(kind: str) -> RuntimeBackend:
    """The :class:`RuntimeBackend` called ``kind``."""
    found: RuntimeBackend = runtime_module(kind).BACKEND
    return found


def options_for(kind: str, **values: Any) -> RuntimeOptions:
    """Typed options of runtime ``kind`` from keyword values (a TypeError names an unknown one)."""
    return backend(kind).options_type(**values)


def open_runtime(
    kind: str, model_path: str | Path, num_threads: int | None = None, options: RuntimeOptions | None = None
) -> Runtime:
    """Load the model file at ``model_path`` (read once, safely) with the runtime called ``kind``.

    For a bundle's files use ``Classifier.open`` (or :func:`.choice.open_model`), which loads the
    bytes that were verified.

    Raises:
        UsageError: ``kind`` is not a runtime this build knows.
        BundleError: the model file cannot be loaded by that runtime.
    """
    from ..core.bundle import read_model_file

    chosen = backend(kind)
    return chosen.open(read_model_file(model_path), num_threads, options or chosen.options_type())


def unavailable_reason(kind: str) -> str | None:
    """None when runtime ``kind`` can run on this machine, else one line saying what is missing."""
    return backend(kind).unavailable_reason()


def available_runtimes(spec: ModelSpec | None = None) -> list[str]:
    """Runtimes usable on this machine, fastest first; with a ``ModelSpec``, only those it has a model for.

    ``edgesight bench`` uses this to compare every runtime a bundle can run on, in one table.
    """
    found = []
    for kind in AUTO_ORDER:
        try:
            if unavailable_reason(kind) is not None:
                continue
            if spec is not None:
                backend(kind).model_for(spec)
        except EdgesightError as exc:
            log.debug("runtime %s not available: %s", kind, exc)
            continue
        found.append(kind)
    return found


def __getattr__(name: str) -> Any:
    """``dequantize`` needs NumPy: imported when first asked for, not with the registry."""
    if name == "dequantize":
        from .tensors import dequantize

        return dequantize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Runtime",
    "RuntimeBackend",
    "RuntimeOptions",
    "RuntimeUnavailable",
    "Registered",
    "TensorInfo",
    "REGISTRY",
    "RUNTIMES",
    "RUNTIME_NAMES",
    "AUTO_ORDER",
    "RUNTIME_CHOICES",
    "backend",
    "options_for",
    "open_runtime",
    "runtime_module",
    "unavailable_reason",
    "available_runtimes",
    "check_model_data",
    "dequantize",
]
