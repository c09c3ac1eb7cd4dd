"""Test footage: the one panning video made from a real photo, and a plain frame reader.

A benchmark needs a repeatable file source that looks like a camera (a real scene, a bit of
motion so the codec does real work). The shared ``cat_720p.jpg`` is panned across the frame;
on a device without the shared test data a synthetic scene is drawn instead, so ``edgesight
bench`` works anywhere. The tests (``tests/videos.py``), ``scripts/demo.sh`` and the scripts
write their videos with the same :func:`pan_frames` and :func:`write_video`. ``iter_frames``
is the capture loop of the usual Raspberry Pi example (``cv2.VideoCapture`` read after read):
the baseline the pipeline is compared to.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..core.errors import SourceError
from ..core.preprocess import IMAGE_SUFFIXES, list_images, read_image
from ..runtimes.litert import quiet_native_stderr

log = logging.getLogger(__name__)

TEST_IMAGE = ("images", "cat_720p.jpg")
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg"})


def testdata_dir() -> Path | None:
    """The shared test data folder: ``$EDGESIGHT_TESTDATA``, else ``../shared/testdata`` of the cwd or checkout."""
    candidates = []
    if os.environ.get("EDGESIGHT_TESTDATA"):
        candidates.append(Path(os.environ["EDGESIGHT_TESTDATA"]))
    candidates.append(Path.cwd().parent / "shared" / "testdata")
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "testdata")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def synthetic_scene(width: int = 1280, height: int = 720) -> np.ndarray:
    """A BGR test card with gradients, edges and text, used when no real photo is available."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)
    scene = np.empty((height, width, 3), np.uint8)
    scene[..., 0] = np.add.outer(y * 0.5, x * 0.5).astype(np.uint8)
    scene[..., 1] = np.tile(x.astype(np.uint8), (height, 1))
    scene[..., 2] = np.tile(y.astype(np.uint8)[:, None], (1, width))
    for i in range(12):
        centre = (int(width * (0.1 + 0.07 * i)), int(height * (0.3 + 0.04 * (i % 5))))
        cv2.circle(scene, centre, 20 + 6 * i, (40 * (i % 6), 255 - 20 * i, 30 * i % 255), -1)
    cv2.putText(
        scene,
        "edgesight",
        (width // 8, height - height // 8),
        cv2.FONT_HERSHEY_SIMPLEX,
        height / 180,
        (255, 255, 255),
        max(1, height // 180),
    )
    return scene


def scene_origin() -> str:
    """Where the default test video's picture comes from: the shared photo, or ``synthetic``."""
    data = testdata_dir()
    candidate = data.joinpath(*TEST_IMAGE) if data else None
    return str(candidate) if candidate is not None and candidate.is_file() else "synthetic"


def scene_image(image: Path | None = None) -> tuple[np.ndarray, str]:
    """The BGR picture the test video is made from, and where it came from."""
    if image is None and scene_origin() != "synthetic":
        image = Path(scene_origin())
    if image is not None:
        return read_image(image), str(image)
    log.info("shared test data not found; drawing a synthetic scene for the test video")
    return synthetic_scene(), "synthetic"


def pan_frames(image: np.ndarray, count: int, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """``count`` frames panning a crop window slowly across ``image``, resized to ``size`` (w, h).

    The one definition of the test pan, shared by the bench's video, the tests and the demo.
    The window covers 85 % of the picture, so the subject stays in view (the shared V2 model
    still says "Egyptian cat") while pixels change from frame to frame like a slowly moving
    camera's (a still video would let a codec hide decoding bugs). A generator, so a long video
    is never held in memory at once.
    """
    h, w = image.shape[:2]
    cw, ch = int(w * 0.85), int(h * 0.85)
    for i in range(count):
        t = i / max(1, count - 1)
        x0 = int((w - cw) * t)
        y0 = int((h - ch) * (0.5 + 0.5 * np.sin(2 * np.pi * t)))
        crop = image[y0 : y0 + ch, x0 : x0 + cw]
        yield cv2.resize(crop, size, interpolation=cv2.INTER_AREA)


def write_video(path: Path | str, frames: Iterable[np.ndarray], fps: float = 30.0) -> Path:
    """Encode BGR frames with cv2.VideoWriter: MJPG in ``.avi`` (every OpenCV build decodes it),
    MPEG-4 Part 2 (``mp4v``) otherwise. The frame size is the first frame's."""
    path = Path(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise SourceError(f"{path}: no frames to write")
    height, width = first.shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter.fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
    if not writer.isOpened():
        raise SourceError(f"{path}: OpenCV cannot write this video here (no FFmpeg backend?)")
    try:
        writer.write(first)
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return path


def make_test_video(
    out_path: Path,
    frames: int = 300,
    width: int = 1280,
    height: int = 720,
    fps: float = 30.0,
    image: Path | None = None,
) -> Path:
    """Write ``frames`` frames of :func:`pan_frames` across a photo (the shared cat by default)."""
    scene, origin = scene_image(image)
    write_video(out_path, pan_frames(scene, frames, (width, height)), fps)
    log.info("wrote %d-frame %dx%d test video %s from %s", frames, width, height, out_path, origin)
    return out_path


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def check_source(path: Path) -> str:
    """``"video"`` or ``"images"`` for a usable file source; a SourceError naming it otherwise."""
    if not path.exists():
        raise SourceError(f"{path}: no such video file or image directory")
    if path.is_dir():
        if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*") if p.is_file()):
            raise SourceError(f"{path}: directory holds no images")
        return "images"
    with quiet_native_stderr():  # FFmpeg's own complaint would be a second stderr line
        capture = cv2.VideoCapture(str(path))
        try:
            ok, _ = capture.read()
        finally:
            capture.release()
    if not ok:
        raise SourceError(f"{path}: not a video file OpenCV can decode")
    return "video"


def timed_frames(path: Path, limit: int | None = None) -> Iterator[tuple[np.ndarray, float, float]]:
    """Each frame of :func:`iter_frames` with when its read started and how long it took (ms).

    The read is timed around ``next()`` so the decode cost lands on the frame it produced.
    """
    reader = iter_frames(path, limit)
    while True:
        t0 = time.perf_counter()
        frame = next(reader, None)
        if frame is None:
            return
        yield frame, t0, (time.perf_counter() - t0) * 1e3


def iter_frames(path: Path, limit: int | None = None) -> Iterator[np.ndarray]:
    """BGR frames of a video file or an image directory, one read after another, no prefetch."""
    if path.is_dir():
        for number, image_path in enumerate(list_images([path])):
            if limit is not None and number >= limit:
                return
            yield read_image(image_path)
        return
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SourceError(f"{path}: cannot open video")
    try:
        number = 0
        while limit is None or number < limit:
            ok, frame = capture.read()
            if not ok:
                return
            number += 1
            yield frame
    finally:
        capture.release()


def describe_source(path: Path, limit: int | None = None) -> dict[str, Any]:
    """Kind, frame count and size of a file source, for the report."""
    kind = check_source(path)
    first = next(iter_frames(path, 1))
    if kind == "video":
        capture = cv2.VideoCapture(str(path))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
    else:
        count = len(list_images([path]))
    if limit is not None:
        count = min(count, limit)
    return {
        "path": str(path),
        "kind": kind,
        "frames": count,
        "width": int(first.shape[1]),
        "height": int(first.shape[0]),
    }
