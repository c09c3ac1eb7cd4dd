"""Fake of picamera2 (``Picamera2``): the calls edgesight makes, with picamera2's names and layouts.

A Pi camera cannot exist on CI. This stands in for it, with the documented behaviour that matters:
``create_video_configuration(main=..., lores=...)`` returns a config dict, ``configure``, ``start``,
``capture_array(name)`` blocks until the next frame (the camera's frame rate) and returns the
stream's array - RGB888 laid out [B, G, R] per pixel (picamera2's manual), YUV420 as an
(h * 3 / 2, w) plane array - and ``stop``/``close``. A missing camera number raises IndexError,
as picamera2 does when libcamera lists fewer cameras.

Knobs (environment, so a daemon subprocess can use it from PYTHONPATH):
``FAKE_PICAMERA2_IMAGE`` a picture the "camera" looks at (panned slowly, like a hand-held view;
default: a blue frame), ``FAKE_PICAMERA2_FPS`` (default 30), ``FAKE_PICAMERA2_CAMERAS`` (2),
``FAKE_PICAMERA2_FAIL_AFTER`` (capture_array raises RuntimeError after N frames per instance,
like "Camera frontend has timed out!").
"""

from __future__ import annotations

import os
import time

import numpy as np

instances: list[Picamera2] = []


def _env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else default


class Picamera2:
    """One camera; records every call in ``calls`` for tests."""

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num >= _env_int("FAKE_PICAMERA2_CAMERAS", 2):
            raise IndexError("list index out of range")
        self.camera_num = camera_num
        self.calls: list[str] = []
        self.config: dict | None = None
        self.captured = 0
        self.started = False
        self._fps = float(os.environ.get("FAKE_PICAMERA2_FPS", "30"))
        self._next = 0.0
        self._scene = None
        path = os.environ.get("FAKE_PICAMERA2_IMAGE")
        if path:
            import cv2

            self._scene = cv2.imread(path)
        instances.append(self)

    def create_video_configuration(self, main=None, lores=None, **kwargs) -> dict:
        self.calls.append("create_video_configuration")
        main = dict(main or {"size": (1280, 720), "format": "XBGR8888"})
        return {"main": main, "lores": dict(lores) if lores else None, **kwargs}

    def configure(self, config: dict) -> None:
        self.calls.append("configure")
        if config.get("lores") and config["lores"].get("format") not in ("YUV420", None):
            raise RuntimeError("lores stream must be YUV420 on this platform")
        self.config = config

    def start(self) -> None:
        self.calls.append("start")
        if self.config is None:
            raise RuntimeError("Camera must be configured before starting")
        self.started = True
        self._next = time.monotonic()

    def _frame(self, width: int, height: int) -> np.ndarray:
        if self._scene is None:
            image = np.zeros((height, width, 3), np.uint8)
            image[..., 0] = 255  # [B, G, R]: a blue scene
            return image
        import cv2

        h, w = self._scene.shape[:2]
        cw, ch = int(w * 0.85), int(h * 0.85)
        t = (self.captured % 60) / 59
        x0, y0 = int((w - cw) * t), int((h - ch) / 2)
        return cv2.resize(self._scene[y0 : y0 + ch, x0 : x0 + cw], (width, height), interpolation=cv2.INTER_AREA)

    def capture_array(self, name: str = "main") -> np.ndarray:
        self.calls.append(f"capture_array:{name}")
        if not self.started:
            raise RuntimeError("Camera is not running")
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the next frame is not there yet
        self._next = max(self._next + 1.0 / self._fps, time.monotonic() - 1.0)
        self.captured += 1
        fail_after = _env_int("FAKE_PICAMERA2_FAIL_AFTER", None)
        if fail_after is not None and self.captured > fail_after:
            raise RuntimeError("Camera frontend has timed out!")
        stream = self.config.get(name)
        if stream is None:
            raise KeyError(name)
        w, h = stream["size"]
        if stream["format"] == "YUV420":
            import cv2

            return cv2.cvtColor(self._frame(w, h), cv2.COLOR_BGR2YUV_I420)
        image = self._frame(w, h)
        alpha = np.full(image.shape[:2], 255, np.uint8)
        if stream["format"] == "XRGB8888":  # [B, G, R, 255]
            return np.dstack([image, alpha])
        if stream["format"] == "XBGR8888":  # [R, G, B, 255]
            return np.dstack([image[..., ::-1], alpha])
        if stream["format"] == "BGR888":  # [R, G, B]
            return np.ascontiguousarray(image[..., ::-1])
        return image  # RGB888: [B, G, R]

    def stop(self) -> None:
        self.calls.append("stop")
        self.started = False

    def close(self) -> None:
        self.calls.append("close")
