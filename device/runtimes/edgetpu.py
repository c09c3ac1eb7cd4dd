"""Coral Edge TPU: LiteRT with the ``libedgetpu`` delegate running ``model_edgetpu.tflite``.

The delegate is loaded through LiteRT's ``load_delegate`` (the same call pycoral makes). It
fails in two ways that mean different things to the user: ``OSError`` when the Edge TPU
runtime library is not installed, ``ValueError`` when it is installed but no TPU is attached
(or another process holds it). Either way a camera service should keep classifying, so with a
fallback model the CPU takes over and a warning says why.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.bundle import EDGETPU_MODEL, ModelSpec, runtime_for_file
from ..core.errors import BundleError
from ..core.safefile import FileData
from .base import RuntimeOptions, RuntimeUnavailable
from .litert import LiteRTRuntime, find_litert

log = logging.getLogger(__name__)

# Where Coral's runtime installs the delegate; EDGESIGHT_EDGETPU_LIB overrides (non-standard installs).
_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
INSTALL_HINT = (
    "install the Edge TPU runtime from Coral's apt repository "
    "(deb https://packages.cloud.google.com/apt coral-edgetpu-stable main): "
    "sudo apt-get install libedgetpu1-std"
)


def library_name() -> str:
    """The delegate library to load on this OS (or the one named by ``EDGESIGHT_EDGETPU_LIB``)."""
    return os.environ.get("EDGESIGHT_EDGETPU_LIB") or _LIBRARY.get(platform.system(), "libedgetpu.so.1")


def load_edgetpu_delegate(device: str | None = None) -> Any:
    """Load the Edge TPU delegate, optionally for one TPU (``usb``, ``usb:0``, ``pci:0``).

    Raises:
        RuntimeUnavailable: the library is missing, or no Edge TPU is attached.
    """
    load_delegate = find_litert().load_delegate
    if load_delegate is None:
        raise RuntimeUnavailable(f"{find_litert().name} has no load_delegate(); cannot use an Edge TPU")
    library = library_name()
    options = {"device": device} if device else None
    try:
        # Open it ourselves first: when the library is missing, LiteRT's Delegate dies half-built
        # and its __del__ prints an "Exception ignored" traceback to stderr.
        ctypes.CDLL(library)
    except OSError as exc:
        raise RuntimeUnavailable(
            f"Edge TPU runtime {library} not installed ({_first_line(exc)}); {INSTALL_HINT}"
        ) from None
    try:
        return load_delegate(library, options)
    except ValueError as exc:
        raise RuntimeUnavailable(f"no Edge TPU attached or it is busy ({_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines[:2]) if lines else type(exc).__name__


@dataclass(frozen=True)
class EdgeTPUOptions(RuntimeOptions):
    """Which TPU (``usb``, ``usb:0``, ``pci:0``; None = the first) and the CPU model to fall back to.

    ``fallback`` holds the verified bytes of the bundle's CPU model, so a TPU that is unplugged
    makes the service slower, not blind.
    """

    device: str | None = None
    fallback: FileData | None = None


class EdgeTPUBackend:
    """The ``edgetpu`` entry of the registry.

    The model is given to LiteRT as bytes (``model_content``) with the delegate; only the
    delegate library itself is loaded by name, as the Edge TPU runtime requires.
    """

    name = "edgetpu"
    bundle_file = EDGETPU_MODEL
    options_type = EdgeTPUOptions

    def unavailable_reason(self) -> str | None:
        """None when the delegate loads (a TPU is attached), else why not.

        This really opens the TPU, so it answers "can I use it now", not "is software installed".
        """
        try:
            delegate = load_edgetpu_delegate()
        except (RuntimeUnavailable, BundleError) as exc:
            return str(exc)
        del delegate
        return None

    def model_for(self, spec: ModelSpec) -> Path:
        """The bundle's ``model_edgetpu.tflite`` (from ``edgesight export --edgetpu``), or a bare one."""
        path = Path(spec.model_path)
        if runtime_for_file(path.name) == self.name:
            return path
        if spec.bundle_dir is None:
            raise BundleError(
                f"{path}: not an Edge TPU model (compile it with edgetpu_compiler, or export the bundle with --edgetpu)"
            )
        return spec.variant(EDGETPU_MODEL)

    def open(self, model: FileData, num_threads: int | None, options: EdgeTPUOptions) -> LiteRTRuntime:
        """An interpreter for ``model`` with the Edge TPU delegate; the CPU ``fallback`` if it won't load.

        Raises:
            RuntimeUnavailable: no delegate and no fallback model.
        """
        try:
            delegate = load_edgetpu_delegate(options.device)
        except RuntimeUnavailable as exc:
            if options.fallback is None:
                raise
            log.warning("%s; running %s on the CPU instead of %s", exc, options.fallback.path.name, model.path.name)
            return LiteRTRuntime(options.fallback, num_threads=num_threads)
        log.info("Edge TPU delegate %s loaded for %s", library_name(), model.path)
        return LiteRTRuntime(model, num_threads=num_threads, delegates=[delegate], name_suffix="+edgetpu")


BACKEND = EdgeTPUBackend()
