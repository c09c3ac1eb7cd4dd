"""Standard TFLite metadata in exported models, so loaders other than edgesight can use them.

MediaPipe Tasks' ``ImageClassifier`` (the loader behind the Android, iOS and Python LiteRT
examples) needs an image input with normalisation options to accept a float model, and labels as
an associated file (``TENSOR_AXIS_LABELS``) to name its answers. This writes both, plus the
bundle's name, version and a description, with MediaPipe's own metadata writer rather than
hand-built flatbuffers. The device never reads this metadata (it reads the manifest), and LiteRT
ignores it, so a model with it classifies exactly as before.

It runs before the bundle is written: the manifest's sha256 is of the file with its metadata.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..device.core.errors import EdgesightError
from ..device.core.preprocess import InputContract

# --no-deps: mediapipe's own dependencies would add opencv-contrib-python beside pip's OpenCV.
INSTALL_HINT = "pip install --no-deps 'mediapipe>=1.2.3,<1.3' (scripts/setup.sh does it with the trainer extra)"

# mediapipe 0.10.30 to 1.2.3 (the pip wheels since it moved to a C library) import a pybind
# module, ``_pywrap_metadata_version``, that their wheels no longer contain; its one function
# gives the minimum metadata parser version the populator stamps into the metadata. A stand-in
# module is installed only when the real one is absent. It uses tflite-support's compiled
# function when that is importable, else "1.0.0": the version the real function returns for what
# with_metadata writes (general info, a normalised image input, a classification output with a
# labels file), checked against tflite-support 0.4.4's on the shared MobileNet. Writing features
# of later schema versions (tensor groups, custom metadata, ...) would need the real function.
_STALE_IMPORT = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"
_FEATURES_VERSION = "1.0.0"


def _minimum_parser_version(metadata_buffer: bytes) -> str:
    try:
        real = importlib.import_module("tensorflow_lite_support.metadata.cc.python._pywrap_metadata_version")
    except ImportError:
        return _FEATURES_VERSION
    return str(real.GetMinimumMetadataParserVersion(metadata_buffer))


def _install_stand_in() -> None:
    """Idempotent: the real module, or a stand-in already installed, is left as it is."""
    if _STALE_IMPORT not in sys.modules:
        try:
            if importlib.util.find_spec(_STALE_IMPORT) is not None:
                return
        except (ModuleNotFoundError, ValueError):
            pass
    parts = _STALE_IMPORT.split(".")
    for i in range(3, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    module = sys.modules[_STALE_IMPORT]
    if not hasattr(module, "GetMinimumMetadataParserVersion"):
        module.GetMinimumMetadataParserVersion = _minimum_parser_version  # type: ignore[attr-defined]


class MetadataError(EdgesightError):
    """The metadata writer is missing or refused a model."""


def _load_writers() -> tuple[Any, Any]:
    """(metadata_writer, metadata_info) modules from MediaPipe, or a MetadataError naming the fix."""
    try:
        if importlib.util.find_spec("mediapipe") is None:
            raise ImportError("mediapipe")
        _install_stand_in()
        base = "mediapipe.tasks.python.metadata.metadata_writers"
        return importlib.import_module(f"{base}.metadata_writer"), importlib.import_module(f"{base}.metadata_info")
    except ImportError as exc:
        raise MetadataError(f"cannot write TFLite metadata ({exc}); install it with: {INSTALL_HINT}") from None


def with_metadata(
    model: bytes, labels: Sequence[str], contract: InputContract, *, name: str, version: str, description: str
) -> bytes:
    """``model`` with an image input (the contract's mean/std), labels file and general info."""
    writer_mod, info_mod = _load_writers()
    writer = None
    try:
        writer = writer_mod.MetadataWriter.create(bytearray(model))
        # add_general_info takes no version; GeneralMd does, so set the same object with it.
        writer.add_general_info(name, description)
        writer._general_md = info_mod.GeneralMd(name=name, version=version, description=description, author="edgesight")
        writer.add_image_input([float(contract.mean)], [float(contract.std)])
        writer.add_classification_output(writer_mod.Labels().add(list(labels)))
        content, _json = writer.populate()
    except Exception as exc:  # the flatbuffer parser and the C library report a bad model as plain errors
        raise MetadataError(f"the metadata writer refused the model: {exc}") from None
    finally:
        writer = None  # its __del__ removes a temp folder: now, not at interpreter exit (noise on stderr)
    return bytes(content)


def describe(labels: Sequence[str], contract: InputContract) -> str:
    """One sentence a model browser (Netron, MediaPipe Studio) shows for an edgesight model."""
    return (
        f"edgesight image classifier: {len(labels)} classes ({', '.join(labels[:5])}"
        f"{', ...' if len(labels) > 5 else ''}), {contract.width}x{contract.height} RGB input, "
        f"pixels as (value - {contract.mean:g}) / {contract.std:g}"
    )


def add_metadata(
    paths: Iterable[Path], labels: Sequence[str], contract: InputContract, *, name: str, version: str
) -> None:
    """Rewrite each .tflite in ``paths`` in place with its metadata (before it is hashed)."""
    description = describe(labels, contract)
    for path in paths:
        content = with_metadata(
            path.read_bytes(), labels, contract, name=name, version=version, description=description
        )
        tmp = path.with_name(path.name + ".metadata-tmp")
        tmp.write_bytes(content)
        tmp.replace(path)
