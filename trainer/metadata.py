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

INSTALL_HINT = "pip install 'edgesight[trainer]' (it brings mediapipe, whose metadata writer this uses)"

# mediapipe 0.10.30 to 1.2.3 ship metadata.py with a leftover import of a pybind module their
# wheels no longer contain; 1.2.3 no longer calls it (the C library does that job), so an empty
# stand-in lets the maintained writer load. It is only installed when the real module is absent.
_STALE_IMPORT = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


class MetadataError(EdgesightError):
    """The metadata writer is missing or refused a model."""


def _load_writers() -> tuple[Any, Any]:
    """(metadata_writer, metadata_info) modules from MediaPipe, or a MetadataError naming the fix."""
    try:
        if importlib.util.find_spec("mediapipe") is None:
            raise ImportError("mediapipe")
        try:
            present = importlib.util.find_spec(_STALE_IMPORT) is not None
        except ModuleNotFoundError:
            present = False
        if not present:
            parts = _STALE_IMPORT.split(".")
            for i in range(3, len(parts) + 1):
                sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        base = "mediapipe.tasks.python.metadata.metadata_writers"
        return importlib.import_module(f"{base}.metadata_writer"), importlib.import_module(f"{base}.metadata_info")
    except ImportError as exc:
        raise MetadataError(f"cannot write TFLite metadata ({exc}); install it with: {INSTALL_HINT}") from None


def with_metadata(
    model: bytes, labels: Sequence[str], contract: InputContract, *, name: str, version: str, description: str
) -> bytes:
    """``model`` with an image input (the contract's mean/std), labels file and general info."""
    writer_mod, info_mod = _load_writers()
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
