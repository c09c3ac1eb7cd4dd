"""Pick the runtime and the bundle file it runs: ``auto`` (fastest available) or one named in config.

A bundle can hold several forms of one model (``model.tflite``, ``model_edgetpu.tflite``,
``model.onnx``, TensorRT engines). The runtime decides which file it needs, so a Coral stick or
a Jetson is a config change (``runtime = "edgetpu"``), not another bundle.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..core.bundle import ModelSpec, runtime_for_file
from ..core.errors import BundleError, UsageError
from . import AUTO_ORDER, RUNTIME_CHOICES, backend
from .base import Runtime, RuntimeOptions, RuntimeUnavailable

log = logging.getLogger(__name__)


def kind_for_file(path: Path) -> str:
    """The runtime a model file is made for: the bundle table's answer (LiteRT for any other name)."""
    return runtime_for_file(Path(path).name) or "litert"


def _explicit_file(spec: ModelSpec) -> bool:
    """True when the user named the model file (a bare model, or ``--model-file``), not just a bundle."""
    if spec.bundle_dir is None:
        return True
    return Path(spec.model_path).name != spec.manifest.get("default_model")


def _fallback_model(spec: ModelSpec) -> Path | None:
    """The CPU model an Edge TPU bundle falls back to when no TPU is attached."""
    if spec.bundle_dir is None:
        return None
    return Path(spec.bundle_dir) / spec.manifest["default_model"]


def _open(kind: str, path: Path, spec: ModelSpec, num_threads: int | None, fallback: bool) -> Runtime:
    """Load ``path`` of ``spec`` from the bytes the bundle check verified (never by path again)."""
    chosen = backend(kind)
    options: RuntimeOptions = chosen.options_type()
    if kind == "edgetpu" and fallback:
        from .edgetpu import EdgeTPUOptions

        cpu_model = _fallback_model(spec)
        options = EdgeTPUOptions(fallback=spec.read_model(cpu_model) if cpu_model is not None else None)
    return chosen.open(spec.read_model(path), num_threads, options)


def open_model(spec: ModelSpec, runtime: str = "auto", num_threads: int | None = None) -> tuple[Runtime, Path]:
    """Load the model of ``spec`` on ``runtime``; return the runtime and the file it actually runs.

    ``auto`` tries :data:`AUTO_ORDER` (TensorRT, Edge TPU, LiteRT CPU, ONNX Runtime) and takes the
    first whose library, hardware and model file are all present, logging which and why. A
    named runtime that cannot run here is a one-line error, except ``edgetpu``, which falls back
    to the bundle's CPU model with a warning (a TPU unplugged must not stop a camera service).

    Raises:
        UsageError: unknown runtime, or a model file that the named runtime cannot run.
        BundleError / RuntimeUnavailable: the runtime or its model file is missing or broken.
    """
    if runtime not in RUNTIME_CHOICES:
        raise UsageError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIME_CHOICES)}")
    path = Path(spec.model_path)
    if _explicit_file(spec):
        kind = kind_for_file(path)
        fallback = _fallback_model(spec)
        if kind == "edgetpu" and runtime == "litert" and fallback is not None:
            return _open("litert", fallback, spec, num_threads, fallback=False), fallback  # the CPU twin
        if runtime not in ("auto", kind):
            raise UsageError(
                f"{path}: this is a model for the {kind} runtime, not {runtime}; "
                f"pass the bundle directory to let {runtime} pick its own file"
            )
        chosen = _open(kind, path, spec, num_threads, fallback=True)
        return chosen, Path(getattr(chosen, "model_path", path))
    if runtime != "auto":
        try:
            model = backend(runtime).model_for(spec)
        except RuntimeUnavailable:
            raise
        except BundleError as exc:
            if runtime != "edgetpu":
                raise
            fallback = _fallback_model(spec)
            if fallback is None:
                raise
            log.warning("%s; running %s on the CPU instead", exc, fallback.name)
            return _open("litert", fallback, spec, num_threads, fallback=False), fallback
        chosen = _open(runtime, model, spec, num_threads, fallback=True)
        return chosen, Path(getattr(chosen, "model_path", model))
    skipped = []
    for kind in AUTO_ORDER:
        try:
            model = backend(kind).model_for(spec)
        except (RuntimeUnavailable, BundleError) as exc:
            if getattr(exc, "warn", False):
                log.warning("auto: skipping %s: %s", kind, exc)
            else:
                log.debug("auto: skipping %s: %s", kind, exc)
            continue
        try:
            chosen = _open(kind, model, spec, num_threads, fallback=False)
        except RuntimeUnavailable as exc:
            # The bundle was built for this accelerator, so its absence is worth a warning.
            log.warning(
                "auto: %s has %s but %s cannot run it here (%s); trying the next runtime",
                spec.bundle_dir,
                model.name,
                kind,
                exc,
            )
            skipped.append(kind)
            continue
        log.info(
            "auto: running %s on %s %s%s",
            model.name,
            chosen.name,
            chosen.version,
            f" (skipped {', '.join(skipped)})" if skipped else "",
        )
        return chosen, Path(getattr(chosen, "model_path", model))
    raise RuntimeUnavailable(
        f"{spec.bundle_dir}: no installed runtime can run this bundle (tried {', '.join(AUTO_ORDER)})"
    )
