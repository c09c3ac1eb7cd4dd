"""Write real video files with OpenCV for the daemon, source and pipeline tests.

The pan itself is defined once, in ``edgesight.device.bench.footage`` (the bench and the demo
write the same one); these helpers keep the names and list/``RuntimeError`` shapes the tests use.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from edgesight.device.bench import footage
from edgesight.device.core.errors import SourceError


def pan_frames(image: np.ndarray, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``count`` frames panning a crop window slowly across ``image``, resized to ``size`` (w, h)."""
    return list(footage.pan_frames(image, count, size))


def write_video(path: Path | str, frames: Iterable[np.ndarray], fps: float = 30.0) -> Path:
    """Encode BGR frames with cv2.VideoWriter (MJPG in .avi: decodable by every OpenCV build)."""
    try:
        return footage.write_video(path, frames, fps)
    except SourceError as exc:
        raise RuntimeError(str(exc)) from exc


def cat_video(
    path: Path, source_image: Path, count: int = 30, size: tuple[int, int] = (640, 360), fps: float = 30.0
) -> Path:
    """A short panning video of ``cat_720p.jpg`` (the shared v2 model says 'Egyptian cat')."""
    image = cv2.imread(str(source_image))
    if image is None:
        raise RuntimeError(f"cannot read {source_image}")
    return write_video(path, footage.pan_frames(image, count, size), fps)
