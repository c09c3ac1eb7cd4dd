"""Frame sources behind one interface: ``open_source(spec)`` -> an object with ``read()``.

A SPEC is ``picamera2`` / ``picamera2:N``, ``jetson-csi`` / ``jetson-csi:N``, an integer (USB/V4L2 index), an ``rtsp://``,
``http://`` or ``https://`` URL, a GStreamer pipeline (any string with `` ! ``), a directory of
images, or a video file. Every source is wrapped in :class:`ReopeningSource`, so a camera that
drops out or a stream that fails is reopened with exponential backoff instead of ending the
daemon, and the frame numbers keep rising across the gap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from ..core.errors import SourceError

log = logging.getLogger(__name__)

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://")


@dataclass(frozen=True)
class Frame:
    """One captured image.

    ``order`` says whether ``image`` is "BGR" (OpenCV, picamera2 RGB888) or "RGB", so the
    preprocessing converts it exactly once. ``timestamp`` is ``time.time()`` at capture and
    ``capture_ms`` how long the read/decode took.
    """

    number: int
    image: np.ndarray
    timestamp: float
    capture_ms: float
    order: str = "BGR"


class Source(Protocol):
    """What the pipeline reads from; ``read()`` returns None when the source has ended."""

    name: str
    live: bool  # True: frames arrive in real time and stale ones may be dropped
    dropped: int  # frames the source itself skipped (e.g. a realtime file catching up)

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff between reopen attempts: ``initial``, doubling, capped at ``maximum``."""

    initial: float = 0.5
    maximum: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.maximum, self.initial * (2 ** max(0, attempt - 1)))


class ReopeningSource:
    """Wrap a source factory: reopen on failure with backoff, renumber frames monotonically.

    A failure is a :class:`SourceError` (or an OSError) from ``read()``. The gap (how long no
    frames came, how many attempts) is logged when frames come back and counted in
    ``reopens``/``gap_s`` so ``stats`` can report it. ``close()`` interrupts a backoff wait at once,
    so SIGTERM during an outage still stops the daemon quickly.
    """

    def __init__(
        self,
        opener: Callable[[], Source],
        backoff: Backoff | None = None,
        *,
        name: str = "",
        wait_for_first: bool = False,
    ) -> None:
        self._opener = opener
        self.backoff = backoff or Backoff()
        self._closed = threading.Event()
        self._number = 0
        self._dropped_before = 0
        self.reopens = 0
        self.gap_s = 0.0
        self.failing_since: float | None = None  # set while the source is down
        try:
            self._inner: Source | None = opener()
        except SourceError as exc:
            if not wait_for_first:
                raise  # strict: at the command line a wrong spec is a user error
            # a camera or stream that is not up yet at boot: keep trying, like any later outage
            log.warning("source %s cannot be opened yet (%s); retrying with backoff", name, exc)
            self._inner = None
            self.failing_since = time.monotonic()
        self.name = self._inner.name if self._inner else name
        self.live = self._inner.live if self._inner else True

    @property
    def dropped(self) -> int:
        return self._dropped_before + (self._inner.dropped if self._inner else 0)

    def read(self) -> Frame | None:
        attempt = 0
        while not self._closed.is_set():
            if self._inner is None:
                attempt += 1
                self._inner = self._try_open(attempt)
                if self._inner is None:
                    continue
            try:
                frame = self._inner.read()
            except (SourceError, OSError) as exc:
                self._fail(str(exc))
                continue
            if frame is None:
                return None
            if self.failing_since is not None:
                gap = time.monotonic() - self.failing_since
                self.gap_s += gap
                self.reopens += 1
                self.failing_since = None
                log.warning("source %s is back after a %.1f s gap", self.name, gap)
            self._number += 1
            return replace(frame, number=self._number)
        return None

    def _fail(self, reason: str) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        log.warning("source %s failed: %s; reopening", self.name, reason)
        self._close_inner()

    def _try_open(self, attempt: int) -> Source | None:
        delay = self.backoff.delay(attempt)
        if self._closed.wait(delay):
            return None
        try:
            return self._opener()
        except (SourceError, OSError) as exc:
            log.warning(
                "source %s: reopen attempt %d failed (%s); next in %.1f s",
                self.name,
                attempt,
                exc,
                self.backoff.delay(attempt + 1),
            )
            return None

    def _close_inner(self) -> None:
        if self._inner is not None:
            self._dropped_before += self._inner.dropped
            try:
                self._inner.close()
            except Exception:  # noqa: BLE001 - a broken camera must not stop the reopen loop
                log.debug("closing %s failed", self.name, exc_info=True)
            self._inner = None

    def interrupt(self) -> None:
        """Stop waiting between reopen attempts (from another thread); ``read()`` then returns None."""
        self._closed.set()

    def close(self) -> None:
        self.interrupt()
        self._close_inner()


def _open_raw(spec: str, *, realtime: bool, loop: bool, **opts) -> Source:
    """Pick the source implementation for ``spec`` (no reopen wrapper)."""
    text = spec.strip()
    if not text:
        raise SourceError("empty source spec; use a camera index, picamera2, a URL, a video file or a folder")
    if text == "picamera2" or text.startswith("picamera2:"):
        from .picamera2 import PicameraSource

        _, _, num = text.partition(":")
        if num and not num.isdigit():
            raise SourceError(f"source {spec!r}: camera number must be an integer, e.g. picamera2:1")
        return PicameraSource(int(num or 0), **opts)
    from .opencv import OpenCVSource

    if text == "jetson-csi" or text.startswith("jetson-csi:"):
        _, _, num = text.partition(":")
        if num and not num.isdigit():
            raise SourceError(f"source {spec!r}: sensor id must be an integer, e.g. jetson-csi:0")
        pipeline = jetson_csi_pipeline(
            int(num or 0), opts.get("width") or 1280, opts.get("height") or 720, int(opts.get("fps") or 30)
        )
        return OpenCVSource(pipeline, kind="gstreamer", **opts)
    if text.isdigit():
        return OpenCVSource(int(text), kind="usb", **opts)
    if " ! " in text:
        return OpenCVSource(text, kind="gstreamer", **opts)
    if text.lower().startswith(URL_SCHEMES):
        return OpenCVSource(text, kind="url", **opts)
    path = Path(text).expanduser()
    if path.is_dir():
        from .images import ImageFolderSource

        return ImageFolderSource(path, realtime=realtime, loop=loop, fps=opts.get("fps"))
    if not path.exists():
        raise SourceError(f"{path}: no such video file or image folder")
    return OpenCVSource(str(path), kind="file", realtime=realtime, loop=loop, **opts)


def is_device_spec(spec: str) -> bool:
    """True for cameras and streams (which may come up late), False for files and folders."""
    text = spec.strip()
    return (
        text.isdigit()
        or " ! " in text
        or text.lower().startswith(URL_SCHEMES)
        or text.split(":")[0] in ("picamera2", "jetson-csi")
    )


def open_source(
    spec: str,
    *,
    realtime: bool = False,
    loop: bool = False,
    reopen: bool = True,
    backoff: Backoff | None = None,
    wait_for_device: bool = False,
    **opts,
) -> Source:
    """Open the source a SPEC names; see the module docstring for the forms.

    Args:
        spec: the source, as in config ``[source] spec`` or ``--source``.
        realtime: pace a video file or image folder to its frame rate (and drop frames when
            behind, like a camera) instead of serving every frame as fast as it is read.
        loop: restart a video file or folder at its end instead of ending.
        reopen: wrap in :class:`ReopeningSource` (reopen on failure with backoff).
        wait_for_device: a camera or stream that cannot be opened yet is retried with backoff
            instead of raising (the daemon at boot); a missing file or folder still raises.
        opts: ``width``, ``height``, ``fps`` (cameras), ``stream`` ("main"/"lores", picamera2).

    Raises:
        SourceError: the source cannot be opened now (a missing file, no such camera).
    """

    def opener() -> Source:
        return _open_raw(spec, realtime=realtime, loop=loop, **opts)

    if not reopen:
        return opener()
    return ReopeningSource(opener, backoff, name=spec, wait_for_first=wait_for_device and is_device_spec(spec))


def jetson_csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0) -> str:
    """The usual GStreamer pipeline for a CSI camera on a Jetson (nvarguscamerasrc -> BGR appsink).

    The ISP delivers NV12 in NVMM memory; ``nvvidconv`` copies it to system memory as BGRx and
    ``videoconvert`` drops the x, so OpenCV gets BGR. ``drop=1 max-buffers=1`` keeps only the newest
    frame, which is what a live classifier wants. Use it as ``[source] spec``.
    """
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, "
        f"framerate=(fraction){fps}/1, format=(string)NV12 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw, format=(string)BGRx ! "
        f"videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=1 max-buffers=1"
    )


__all__ = ["Frame", "Source", "Backoff", "ReopeningSource", "open_source", "jetson_csi_pipeline"]
