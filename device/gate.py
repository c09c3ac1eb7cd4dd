"""Change gating and the region of interest: classify a frame only when the scene changed.

A camera at a door or a feeder shows the same scene most of the day; classifying every frame of
it costs a Pi most of a core. :class:`ChangeGate` decides, in the capture thread and before a
frame is queued to a worker (so a gated frame costs neither the preprocess nor the inference),
whether the frame is worth classifying:

* its **change** is the mean absolute difference, in grey levels 0..255, between a tiny grey
  copy of the frame (:data:`TINY` pixels, ``cv2.resize`` with ``INTER_AREA``, which averages
  the sensor noise away) and the tiny copy of the **last classified** frame. Comparing with the
  last classified frame rather than the previous one makes slow drift (light through a day)
  accumulate until it counts. ``threshold = 3`` means "the whole scene got 3 grey levels
  brighter, or a tenth of it changed by 30";
* a change above ``threshold`` is classified at once (the cut is classified on its first frame),
  and every frame after it for ``settle_s`` seconds, so the state smoother sees the same
  evidence it sees without gating and a state change is not delayed;
* a scene that stays below the threshold is still classified every ``max_interval_s``, so a slow
  drift cannot freeze the state and the status page never goes stale.

A gated frame is counted and dropped: it is not published as a new result and does not reach
the consumers (the smoother, drift monitor, captures), so the state cannot change on it; the
last result stands for it.

With a region of interest (``[source] roi``, :mod:`.roi`) the gate and the classifier both see
only the region.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

TINY = (64, 36)  # (width, height) of the grey copy the change is measured on: 16:9, 2304 pixels
SAMPLE = 5  # the first, nearest-neighbour step keeps SAMPLE x SAMPLE samples per tiny pixel
HISTORY = 4096  # decisions kept for tests and the stats (frame number, reason, change)
REASONS = ("first", "change", "settle", "interval")


@dataclass(frozen=True)
class Decision:
    """Whether one frame is classified, why (one of :data:`REASONS`, or "gated"), and its change."""

    number: int
    classify: bool
    reason: str
    change: float


class ChangeGate:
    """Per-frame change measure against the last classified frame; see the module doc.

    Not thread-safe: one capture thread calls :meth:`decide` for every frame in order.
    """

    def __init__(self, threshold: float = 3.0, max_interval_s: float = 4.0, settle_s: float = 1.5) -> None:
        self.threshold = float(threshold)
        self.max_interval_s = float(max_interval_s)
        self.settle_s = float(settle_s)
        self.classified = 0
        self.gated = 0
        self.history: deque[Decision] = deque(maxlen=HISTORY)
        self._reference: np.ndarray | None = None  # tiny grey copy of the last classified frame (float32)
        self._tiny = np.empty((TINY[1], TINY[0], 3), np.uint8)  # reused: no allocation per frame
        self._grey = np.empty((TINY[1], TINY[0]), np.uint8)
        self._last_classified = 0.0
        self._settle_until = 0.0
        self._forced = False

    def force(self) -> None:
        """Classify the next frame whatever its change (after a model swap: the old result is stale)."""
        self._forced = True  # a flag, not the reference: decide() may be running in the capture thread

    def tiny(self, image: np.ndarray) -> np.ndarray:
        """The frame reduced to :data:`TINY` grey pixels (into reused buffers).

        Two steps, about 0.15 ms for a 720p frame instead of 1.1 ms for one ``INTER_AREA``
        resize: a nearest-neighbour sample down to at most :data:`SAMPLE` times the tiny size
        (every 4th pixel of 720p), then ``INTER_AREA``, which still averages 25 samples per
        tiny pixel, so sensor noise stays far below a grey level.
        """
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        elif image.ndim == 3 and image.shape[2] == 4:
            image = image[..., :3]
        height, width = image.shape[:2]
        mid = (min(width, TINY[0] * SAMPLE), min(height, TINY[1] * SAMPLE))
        if mid != (width, height):
            image = cv2.resize(image, mid, interpolation=cv2.INTER_NEAREST)
        if image.ndim == 2:
            cv2.resize(image, TINY, dst=self._grey, interpolation=cv2.INTER_AREA)
            return self._grey
        # resize first, then convert: converting 2304 pixels instead of 921600. The channel order
        # does not matter for a change measure (a BGR/RGB swap weights the channels differently).
        cv2.resize(image, TINY, dst=self._tiny, interpolation=cv2.INTER_AREA)
        cv2.cvtColor(self._tiny, cv2.COLOR_BGR2GRAY, dst=self._grey)
        return self._grey

    def change(self, image: np.ndarray) -> float:
        """Mean absolute grey-level difference (0..255) from the last classified frame; inf before any."""
        grey = self.tiny(image)
        if self._reference is None:
            return float("inf")
        return float(cv2.norm(grey, self._reference, cv2.NORM_L1)) / grey.size

    def decide(self, image: np.ndarray, now: float, number: int = 0) -> Decision:
        """Classify this frame or not (``now``: monotonic seconds); a classified frame becomes the reference."""
        change = self.change(image)
        if self._reference is None or self._forced:
            reason = "first"
            self._forced = False
        elif change > self.threshold:
            reason = "change"
            self._settle_until = now + self.settle_s
        elif now < self._settle_until:
            reason = "settle"
        elif now - self._last_classified >= self.max_interval_s:
            reason = "interval"
        else:
            reason = "gated"
        classify = reason != "gated"
        if classify:
            if self._reference is None:
                self._reference = self._grey.copy()
            else:
                np.copyto(self._reference, self._grey)
            self._last_classified = now
            self.classified += 1
        else:
            self.gated += 1
        decision = Decision(number, classify, reason, round(change, 3) if np.isfinite(change) else -1.0)
        self.history.append(decision)
        return decision

    def stats(self) -> dict[str, Any]:
        """What ``stats`` reports under ``gate``: counts and the settings they came from."""
        total = self.classified + self.gated
        return {
            "enabled": True,
            "classified": self.classified,
            "gated": self.gated,
            "gated_ratio": round(self.gated / total, 3) if total else 0.0,
            "threshold": self.threshold,
            "max_interval_s": self.max_interval_s,
        }


def gate_for(section: Any, *, live: bool, min_dwell: float) -> ChangeGate | None:
    """The gate a ``[gate]`` section asks for, or None.

    ``enabled = "auto"`` gates live sources (cameras, streams, realtime files) and leaves a file
    read as fast as possible (benchmark mode) ungated, so every frame of it is classified.
    ``settle_s`` defaults to the state's ``min_dwell`` plus half a second: long enough for the
    smoother to confirm a new label on the frames that follow the change.
    """
    enabled = section.enabled
    if enabled == "auto":
        enabled = live
    if not enabled:
        return None
    settle = section.settle_s if section.settle_s is not None else min_dwell + 0.5
    return ChangeGate(section.threshold, section.max_interval_s, settle)
