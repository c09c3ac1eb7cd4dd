"""Write real video files with OpenCV for the daemon, source and pipeline tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def pan_frames(image: np.ndarray, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``count`` frames panning a crop window slowly across ``image``, resized to ``size`` (w, h).

    The window covers 85 % of the picture, so the subject stays in view while pixels change from
    frame to frame (a still video would let a codec hide decoding bugs).
    """
    h, w = image.shape[:2]
    cw, ch = int(w * 0.85), int(h * 0.85)
    frames = []
    for i in range(count):
        t = i / max(1, count - 1)
        x0 = int((w - cw) * t)
        y0 = int((h - ch) * (0.5 + 0.5 * np.sin(2 * np.pi * t)))
        crop = image[y0 : y0 + ch, x0 : x0 + cw]
        frames.append(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    """Encode BGR frames with cv2.VideoWriter (MJPG in .avi: decodable by every OpenCV build)."""
    path = Path(path)
    h, w = frames[0].shape[:2]
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path}")
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def cat_video(
    path: Path, source_image: Path, count: int = 30, size: tuple[int, int] = (640, 360), fps: float = 30.0
) -> Path:
    """A short panning video of ``cat_720p.jpg`` (the shared v2 model says 'Egyptian cat')."""
    image = cv2.imread(str(source_image))
    if image is None:
        raise RuntimeError(f"cannot read {source_image}")
    return write_video(path, pan_frames(image, count, size), fps)
