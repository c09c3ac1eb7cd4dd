"""A folder of images as a frame source (a test rig, or a time-lapse dropped by another program)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..core.errors import ImageError, SourceError
from ..core.preprocess import list_images, max_image_pixels, read_image
from .base import Frame

log = logging.getLogger(__name__)


class ImageFolderSource:
    """Serve every image of a folder in sorted order, then end (or start over with ``loop``).

    The folder is listed again at each pass, so images added while it runs are picked up. An
    unreadable image (corrupt, truncated, or over ``max_pixels``, checked from its header before
    it is decoded) is skipped with a warning rather than stopping the stream.
    """

    def __init__(
        self,
        folder: Path,
        *,
        realtime: bool = False,
        loop: bool = False,
        fps: float | None = None,
        max_pixels: int | None = None,
    ) -> None:
        self.folder = folder
        self.max_pixels = max_image_pixels(max_pixels)  # a bad limit is a config error now, not per image
        self.name = str(folder)
        self.loop = loop
        self.live = realtime
        self.fps = float(fps or 5.0)
        self.dropped = 0
        self._paths = self._list()
        self._index = 0
        self._next_due = time.monotonic()

    def _list(self) -> list[Path]:
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder}: image folder is gone")
        try:
            return list_images([self.folder])
        except ImageError as exc:
            raise SourceError(str(exc)) from None

    def read(self) -> Frame | None:
        skipped = 0
        while True:
            if self._index >= len(self._paths):
                if not self.loop:
                    return None
                if skipped >= len(self._paths):
                    raise SourceError(f"{self.folder}: none of its images is readable")
                self._paths, self._index = self._list(), 0
            path = self._paths[self._index]
            self._index += 1
            if self.live:
                delay = self._next_due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._next_due = max(self._next_due, time.monotonic() - 1.0) + 1.0 / self.fps
            t0 = time.perf_counter()
            try:
                image = read_image(path, max_pixels=self.max_pixels)
            except ImageError as exc:
                log.warning("skipping %s", exc)
                skipped += 1
                continue
            return Frame(
                number=self._index,
                image=image,
                timestamp=time.time(),
                capture_ms=(time.perf_counter() - t0) * 1e3,
                order="BGR",
            )

    def close(self) -> None:
        self._paths = []
