"""Frame sources behind one interface: ``open_source(spec)`` -> an object with ``read()``.

A SPEC is ``picamera2`` / ``picamera2:N``, ``jetson-csi`` / ``jetson-csi:N``, an integer (USB/V4L2 index), an ``rtsp://``,
``http://`` or ``https://`` URL, a GStreamer pipeline (any string with `` ! ``), a directory of
images, or a video file. Every source is wrapped in :class:`ReopeningSource`, so a camera that
drops out or a stream that fails is reopened with exponential backoff instead of ending the
daemon, and the frame numbers keep rising across the gap.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..core.errors import SourceError
from .base import Backoff, DirectSource, Frame, FrameSource, ReopeningSource, Source

log = logging.getLogger(__name__)

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://")


def _open_raw(spec: str, *, realtime: bool, loop: bool, **opts) -> FrameSource:
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
        reopen: wrap in :class:`ReopeningSource` (reopen on failure with backoff); without it
            a :class:`DirectSource`, so the caller gets a :class:`Source` either way.
        wait_for_device: a camera or stream that cannot be opened yet is retried with backoff
            instead of raising (the daemon at boot); a missing file or folder still raises.
        opts: ``width``, ``height``, ``fps`` (cameras), ``stream`` ("main"/"lores", picamera2).

    Raises:
        SourceError: the source cannot be opened now (a missing file, no such camera).
    """

    def opener() -> FrameSource:
        return _open_raw(spec, realtime=realtime, loop=loop, **opts)

    if not reopen:
        return DirectSource(opener())
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


__all__ = [
    "Frame",
    "FrameSource",
    "Source",
    "Backoff",
    "ReopeningSource",
    "DirectSource",
    "open_source",
    "jetson_csi_pipeline",
]
