"""What ``data import`` finds in a source before any image is checked, shared by every format.

Kept apart from :mod:`dataset` (checks, duplicates, split, manifest) so the format readers of
:mod:`importers` can fill a :class:`Discovery` without importing the dataset module back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SIDECAR_SUFFIXES = frozenset({".json"})  # `edgesight run` [capture] writes one beside each JPEG


@dataclass
class Candidate:
    """One file (or one object crop) found in the source, before checks."""

    path: Path
    label: str
    origin: Path | None = None  # the source photo a crop was cut from
    split: str = ""  # the split the source gives it (train/val/test), kept with --keep-split


@dataclass
class Reject:
    """A file that cannot be trained on (a fault of the image or its annotation)."""

    path: Path
    label: str
    reason: str
    moved_to: Path | None = None


@dataclass
class Unreadable:
    """A file or folder the import could not read (permissions, I/O): reported, left in place."""

    path: Path
    reason: str
    folder: bool = False


@dataclass
class Discovery:
    """What a source holds, before any image is checked."""

    candidates: list[Candidate] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)  # known unusable from layout alone
    unreadable: list[Unreadable] = field(default_factory=list)
    order: list[str] | None = None  # label order from the source's labels.txt
    format: str = ""  # the layout read: folders, voc, kaggle, coco, label-studio, yolo


def os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def visible_files(folder: Path, unreadable: list[Unreadable]) -> list[Path]:
    """Files under ``folder`` (hidden ones skipped); folders that cannot be listed are recorded."""

    def cannot_list(exc: OSError) -> None:
        unreadable.append(Unreadable(Path(exc.filename or folder), os_reason(exc), folder=True))

    found: list[Path] = []
    for top, dirs, files in os.walk(folder, onerror=cannot_list):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(top) / name for name in files if not name.startswith("."))
    return sorted(p for p in found if p.is_file())


def label_text(name: str) -> str:
    """A folder name as label text: valid UTF-8 always (a byte that is not shows as ``\\xe9``)."""
    return os.fsencode(name).decode("utf-8", errors="backslashreplace")
