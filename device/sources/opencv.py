"""OpenCV ``VideoCapture`` sources: USB index, RTSP/HTTP URL, GStreamer pipeline, video file."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2

from ..core.errors import SourceError
from ..core.preprocess import quiet_opencv
from .base import Frame

log = logging.getLogger(__name__)

# FFmpeg's av_log level, read by OpenCV once, at the first FFmpeg open of the process; -8 is AV_LOG_QUIET.
FFMPEG_LOGLEVEL = "OPENCV_FFMPEG_LOGLEVEL"
_FFMPEG_QUIET = "-8"


@contextmanager
def quiet_ffmpeg() -> Iterator[None]:
    """Keep FFmpeg's own lines (``[tcp @ 0x...] Connection ... refused``) off stderr during an open.

    FFmpeg logs through its own callback, which ``cv2.utils.logging`` does not reach; OpenCV sets
    its level from ``OPENCV_FFMPEG_LOGLEVEL`` when it first opens something with FFmpeg, so the
    variable is set (unless the user set it, or ``EDGESIGHT_NATIVE_LOGS=1`` asks for native logs)
    for the open and removed again so child processes inherit the environment they were given.
    Our own error names the source and the likely fix instead.
    """
    if FFMPEG_LOGLEVEL in os.environ or os.environ.get("EDGESIGHT_NATIVE_LOGS"):
        yield
        return
    os.environ[FFMPEG_LOGLEVEL] = _FFMPEG_QUIET
    try:
        yield
    finally:
        os.environ.pop(FFMPEG_LOGLEVEL, None)


class OpenCVSource:
    """One ``cv2.VideoCapture``.

    A camera, URL or pipeline is ``live``: a failed read raises :class:`SourceError` so the
    wrapper reopens it. A video file ends (``read() -> None``) at its last frame unless ``loop``;
    with ``realtime`` it is paced to the file's frame rate and frames it falls behind on are
    skipped (counted in ``dropped``), so it behaves like a camera for demos and soak tests.
    """

    def __init__(
        self,
        target: int | str,
        kind: str,
        *,
        realtime: bool = False,
        loop: bool = False,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        **_: object,
    ) -> None:
        self.kind = kind
        self.target = target
        self.name = f"video:{target}" if kind == "usb" else str(target) if kind != "gstreamer" else "gstreamer"
        self.loop = loop
        self.realtime = realtime and kind == "file"
        self.live = kind != "file" or self.realtime
        self.dropped = 0
        self._requested = (width, height, fps)
        self._cap = self._open()
        file_fps = self._cap.get(cv2.CAP_PROP_FPS) if kind == "file" else 0.0
        self.fps = float(fps or file_fps or 30.0)
        self._start: float | None = None  # the clock starts at the first read, not at open
        self._position = 0  # frames consumed from the file since (re)start, for realtime pacing

    def _open(self) -> cv2.VideoCapture:
        if self.kind == "file" and not Path(str(self.target)).exists():
            raise SourceError(f"{self.target}: video file is gone")
        # OpenCV and FFmpeg print their own lines for a failed open; ours names the source and a fix
        with quiet_opencv(), quiet_ffmpeg():
            if self.kind == "gstreamer":
                cap = cv2.VideoCapture(str(self.target), cv2.CAP_GSTREAMER)
            else:
                cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            hint = {
                "usb": "is the camera plugged in and is the user in the 'video' group?",
                "url": "is the stream reachable?",
                "gstreamer": "was OpenCV built with GStreamer (cv2.getBuildInformation())?",
                "file": "is it a video file OpenCV can decode?",
            }[self.kind]
            raise SourceError(f"{self.name}: cannot open ({hint})")
        width, height, fps = self._requested
        if self.kind == "usb":
            if width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            if height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps:
                cap.set(cv2.CAP_PROP_FPS, fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # V4L2: keep the driver queue short, we want fresh frames
        return cap

    def _pace(self) -> None:
        """Realtime file: wait for the frame's due time, or skip frames we are late for."""
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._position / self.fps
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
            return
        behind = int((now - due) * self.fps)
        for _ in range(behind):
            if not self._cap.grab():
                return
            self._position += 1
            self.dropped += 1

    def read(self) -> Frame | None:
        if self.realtime:
            self._pace()
        t0 = time.perf_counter()
        ok, image = self._cap.read()
        if not ok or image is None:
            if self.kind != "file":
                raise SourceError(f"{self.name}: read failed (camera unplugged or stream ended)")
            if not Path(str(self.target)).exists():
                raise SourceError(f"{self.target}: video file is gone")
            if not self.loop:
                return None
            self._cap.release()
            self._cap = self._open()
            self._start, self._position = time.monotonic(), 0
            ok, image = self._cap.read()
            if not ok or image is None:
                raise SourceError(f"{self.target}: no frames after reopening the file")
        capture_ms = (time.perf_counter() - t0) * 1e3
        self._position += 1
        return Frame(number=self._position, image=image, timestamp=time.time(), capture_ms=capture_ms, order="BGR")

    def close(self) -> None:
        self._cap.release()
