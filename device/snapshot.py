"""Saving a snapshot (cmd/snapshot): the frame as JPEG and its result as JSON, under a quota.

Both files are written whole or not at all (:func:`~edgesight.device.files.write_atomic`): a
SIGKILL or a full disk never leaves a zero-byte JPEG or half a JSON. The folder is kept under
``max_files`` snapshot pairs and ``max_mb`` by deleting the oldest of the daemon's own snapshots
(names ``<device_id>-<UTC time>-<frame>.jpg/.json``; nothing else there is touched or counted),
and a snapshot is refused while less than ``min_free_mb`` is free -- so a flood of commands
cannot fill the disk.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from .core.errors import EdgesightError
from .core.preprocess import to_bgr
from .files import remove_temp_files, write_atomic
from .results import FrameResult, result_payload


@dataclass(frozen=True)
class SavedSnapshot:
    image: Path
    result: Path
    frame: int
    rotated: int  # older snapshots deleted to stay within the quota


def _own_pattern(device_id: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(device_id)}-\d{{8}}T\d{{6}}-\d{{8}}\.(jpg|json)$")


def own_snapshots(folder: Path, device_id: str) -> list[tuple[str, list[Path]]]:
    """The daemon's own snapshots in ``folder`` as (base name, its files), oldest first."""
    pattern = _own_pattern(device_id)
    groups: dict[str, list[Path]] = {}
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for path in entries:
        if pattern.match(path.name) and path.is_file():
            groups.setdefault(path.stem, []).append(path)
    # the base name is <id>-<time>-<frame>: sorting it sorts by age
    return sorted(groups.items())


def _size(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with suppress(OSError):
            total += path.stat().st_size
    return total


def enforce_quota(folder: Path, device_id: str, *, max_files: int, max_mb: float, keep: str = "") -> int:
    """Delete the oldest own snapshots until at most ``max_files`` and ``max_mb`` remain (never ``keep``)."""
    snapshots = own_snapshots(folder, device_id)
    count, used = len(snapshots), sum(_size(files) for _, files in snapshots)
    rotated = 0
    for base, files in snapshots:
        if count <= max_files and used <= max_mb * 1e6:
            break
        if base == keep:
            continue
        for path in files:
            path.unlink(missing_ok=True)
        count, used, rotated = count - 1, used - _size(files), rotated + 1
    return rotated


def remove_orphans(folder: Path, device_id: str) -> int:
    """Delete own snapshots missing their other half (a kill between the two writes); count files."""
    removed = 0
    for _, files in own_snapshots(folder, device_id):
        if len(files) == 1:
            files[0].unlink(missing_ok=True)
            removed += 1
    return removed


def _prepare(folder: Path, device_id: str, min_free_mb: float) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgesightError(f"[snapshot] dir: cannot create {folder} ({exc.strerror or exc})") from None
    # what an interrupted snapshot left (snapshots are written one at a time, so none is in flight)
    remove_temp_files(folder)
    remove_orphans(folder, device_id)
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise EdgesightError(f"[snapshot] dir: cannot read free space of {folder} ({exc.strerror or exc})") from None
    if free < min_free_mb * 1e6:
        raise EdgesightError(
            f"[snapshot] dir: less than {min_free_mb:g} MB free on {folder} ([snapshot] min_free_mb); not saved"
        )


def save_snapshot(result: FrameResult, section: Any, device_id: str) -> SavedSnapshot:
    """Write ``result``'s frame and JSON into ``section.dir`` (the typed ``[snapshot]`` config section).

    Raises EdgesightError with one line (cannot create the folder, disk below the floor, write
    failed); nothing half-written stays behind.
    """
    folder = Path(section.dir)
    _prepare(folder, device_id, section.min_free_mb)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(result.frame.timestamp))
    base = folder / f"{device_id}-{stamp}-{result.frame.number:08d}"
    image, sidecar = base.with_suffix(".jpg"), base.with_suffix(".json")
    ok, jpeg = cv2.imencode(
        ".jpg", to_bgr(result.frame.image, result.frame.order), [cv2.IMWRITE_JPEG_QUALITY, section.quality]
    )
    if not ok:
        raise EdgesightError(f"cmd/snapshot: frame {result.frame.number} could not be encoded as JPEG")
    try:
        write_atomic(image, jpeg.tobytes())
        write_atomic(sidecar, (json.dumps(result_payload(result), indent=2) + "\n").encode("utf-8"))
    except OSError as exc:
        image.unlink(missing_ok=True)  # no JPEG without its JSON
        raise EdgesightError(f"[snapshot] dir: cannot write {base.name} ({exc.strerror or exc})") from None
    rotated = enforce_quota(folder, device_id, max_files=section.max_files, max_mb=section.max_mb, keep=base.name)
    return SavedSnapshot(image, sidecar, result.frame.number, rotated)
