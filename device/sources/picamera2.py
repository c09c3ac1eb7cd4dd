"""Raspberry Pi CSI cameras through picamera2 (libcamera).

Only the documented Picamera2 calls are used: ``Picamera2(camera_num)``,
``create_video_configuration(main=..., lores=...)``, ``configure``, ``start``,
``capture_array(stream)``, ``stop`` and ``close``. The main stream is RGB888, which picamera2
lays out as [B, G, R] per pixel, i.e. what OpenCV calls BGR. The optional lores stream is
YUV420 (the only lores format a Pi 4 ISP produces): asking for a small lores stream lets the ISP
do the downscaling for free, and it is converted to BGR here.
"""

from __future__ import annotations

import logging
import time

import cv2

from ..core.errors import SourceError, UsageError
from .base import Frame

log = logging.getLogger(__name__)

DEFAULT_SIZE = (1280, 720)
DEFAULT_LORES = (320, 240)


class PicameraSource:
    """A live Pi camera. ``stream="lores"`` classifies the ISP-scaled lores stream."""

    live = True

    def __init__(
        self,
        camera_num: int = 0,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        stream: str = "main",
        lores_width: int | None = None,
        lores_height: int | None = None,
        **_: object,
    ) -> None:
        try:
            from picamera2 import Picamera2  # apt: python3-picamera2 (venv with --system-site-packages)
        except ImportError as exc:
            # not a camera outage but a set-up problem: retrying cannot fix it
            raise UsageError(
                "picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install "
                f"python3-picamera2' and make the venv with --system-site-packages ({exc})"
            ) from None
        if stream not in ("main", "lores"):
            raise SourceError(f"picamera2: stream must be main or lores, not {stream!r}")
        self.name = f"picamera2:{camera_num}"
        self.stream = stream
        self.dropped = 0
        size = (width or DEFAULT_SIZE[0], height or DEFAULT_SIZE[1])
        try:
            self._camera = Picamera2(camera_num)
        except (IndexError, RuntimeError) as exc:
            raise SourceError(f"{self.name}: no such camera or it is busy ({exc})") from None
        try:
            streams = {"main": {"size": size, "format": "RGB888"}}
            if stream == "lores":
                streams["lores"] = {
                    "size": (lores_width or DEFAULT_LORES[0], lores_height or DEFAULT_LORES[1]),
                    "format": "YUV420",
                }
            controls = {"FrameRate": float(fps)} if fps else None
            config = (
                self._camera.create_video_configuration(**streams, controls=controls)
                if controls
                else self._camera.create_video_configuration(**streams)
            )
            self._camera.configure(config)
            self._camera.start()
        except Exception as exc:  # libcamera raises plain RuntimeError/ValueError subclasses
            self._camera.close()
            raise SourceError(f"{self.name}: cannot start the camera ({exc})") from None
        self._number = 0

    def read(self) -> Frame:
        t0 = time.perf_counter()
        try:
            array = self._camera.capture_array(self.stream)
        except Exception as exc:  # a camera that stops delivering is reopened by the wrapper
            raise SourceError(f"{self.name}: capture failed ({exc})") from None
        if self.stream == "lores":
            array = cv2.cvtColor(array, cv2.COLOR_YUV2BGR_I420)
        elif array.ndim == 3 and array.shape[2] == 4:
            array = array[:, :, :3]
        self._number += 1
        return Frame(
            number=self._number,
            image=array,
            timestamp=time.time(),
            capture_ms=(time.perf_counter() - t0) * 1e3,
            order="BGR",
        )

    def close(self) -> None:
        try:
            self._camera.stop()
        finally:
            self._camera.close()
