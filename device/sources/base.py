"""The types every frame source shares: a frame, the source protocols, backoff and the reopen wrapper.

They live apart from ``sources/__init__`` (which picks an implementation for a SPEC and imports
each one) so that the implementations can import them without importing the package that
imports them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from ..core.errors import SourceError

log = logging.getLogger(__name__)


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


class FrameSource(Protocol):
    """What one source implementation (OpenCV, picamera2, an image folder) provides.

    ``read()`` returns None when the source has ended and raises :class:`SourceError` (or
    OSError) when it failed and may come back; the pipeline never sees one of these directly,
    :func:`open_source` always hands it a :class:`Source`.
    """

    name: str
    live: bool  # True: frames arrive in real time and stale ones may be dropped

    @property
    def dropped(self) -> int:
        """Frames the source itself skipped (e.g. a realtime file catching up)."""
        ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


class Source(FrameSource, Protocol):
    """What the pipeline reads from: a frame source plus the outage bookkeeping it reports.

    ``failing_since`` is the monotonic time the source went down (None while frames come);
    ``reopens`` and ``gap_s`` count the outages survived and their total length, for ``stats``
    and the watchdog; ``interrupt()`` (from another thread) makes a blocked ``read()`` return
    None as soon as it can, so SIGTERM stops the daemon during an outage.
    """

    reopens: int
    gap_s: float
    failing_since: float | None

    def interrupt(self) -> None: ...


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
        opener: Callable[[], FrameSource],
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
            self._inner: FrameSource | None = opener()
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

    def _try_open(self, attempt: int) -> FrameSource | None:
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


class DirectSource:
    """A frame source without reopening (``open_source(reopen=False)``: benchmarks, tests).

    It has the :class:`Source` bookkeeping with nothing to report: a failure ends the run.
    """

    def __init__(self, inner: FrameSource) -> None:
        self._inner = inner
        self.name = inner.name
        self.live = inner.live
        self.reopens = 0
        self.gap_s = 0.0
        self.failing_since: float | None = None
        self._interrupted = threading.Event()

    @property
    def dropped(self) -> int:
        return self._inner.dropped

    def read(self) -> Frame | None:
        if self._interrupted.is_set():
            return None
        return self._inner.read()

    def interrupt(self) -> None:
        """The next ``read()`` returns None (a read already blocked in a driver is not cut short)."""
        self._interrupted.set()

    def close(self) -> None:
        self.interrupt()
        self._inner.close()
