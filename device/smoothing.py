"""Turn a noisy per-frame top-k stream into a stable state: moving average, threshold, minimum dwell.

A single frame's best label flickers (motion blur, a hand in front of the lens); a home
automation must not. The state is the label with the highest score averaged over the last
``window`` frames, ``none`` (``[state] unknown_label``; not ``unknown``, which Home Assistant
shows for a missing value) when that average is under ``threshold`` (or under the label's own
threshold from a calibrated bundle, when that is higher), and a new label only replaces the
current one after it has been the candidate for ``min_dwell`` seconds.

The dwell is measured on the monotonic clock: NTP stepping the wall clock (a Pi that booted
without network jumps by hours once it syncs) must not freeze or rush the state. Wall time is
kept only for ``since``, which subscribers read as a date.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# The state when nothing reaches the threshold ([state] unknown_label): not "unknown", which is
# Home Assistant's own state for an entity without a value.
NO_LABEL = "none"


@dataclass(frozen=True)
class State:
    """The smoothed label, its averaged score, and since when (epoch seconds) it holds."""

    label: str
    score: float
    since: float
    index: int | None = None

    def as_payload(self) -> dict:
        return {
            "v": 1,
            "label": self.label,
            "score": round(self.score, 4),
            "since": round(self.since, 3),
            "index": self.index,
        }


class StateSmoother:
    """Feed ``update(top, timestamp)`` once per frame; it returns the new State only when it changes."""

    def __init__(
        self,
        window: int = 5,
        threshold: float = 0.5,
        min_dwell: float = 1.0,
        unknown_label: str = NO_LABEL,
        clock: Callable[[], float] = time.monotonic,
        class_thresholds: dict[int, float] | None = None,
    ) -> None:
        self.clock = clock
        self.window = max(1, window)
        self.threshold = threshold
        self.min_dwell = min_dwell
        self.unknown_label = unknown_label
        # per output index, from the bundle's manifest (``thresholds``, chosen for a target precision)
        self.class_thresholds: dict[int, float] = dict(class_thresholds or {})
        self._frames: deque[dict[tuple[int, str], float]] = deque(maxlen=self.window)
        self.current: State | None = None
        self._candidate: tuple[str, float] | None = None  # (label, first seen on self.clock)

    def reset(self, class_thresholds: dict[int, float] | None = None) -> None:
        """Forget the history (after a model swap the labels may mean something else).

        ``class_thresholds`` (the new model's, by output index) replaces the old ones when given.
        """
        self._frames.clear()
        self._candidate = None
        if class_thresholds is not None:
            self.class_thresholds = dict(class_thresholds)

    def smoothed(self) -> tuple[str, float, int | None]:
        """Best label of the moving average: (label, mean score, index) or unknown."""
        totals: dict[tuple[int, str], float] = {}
        for scores in self._frames:
            for key, score in scores.items():
                totals[key] = totals.get(key, 0.0) + score
        if not totals:
            return self.unknown_label, 0.0, None
        (index, label), total = max(totals.items(), key=lambda item: (item[1], -item[0][0]))
        mean = total / len(self._frames)
        # the bundle's per-class threshold can only make the state stricter than [state] threshold
        if mean < max(self.threshold, self.class_thresholds.get(index, 0.0)):
            return self.unknown_label, mean, None
        return label, mean, index

    def update(self, top: Iterable, timestamp: float) -> State | None:
        """Add one frame's predictions (objects with index, label, score); return a changed State or None.

        ``timestamp`` (wall time of the frame) only becomes ``since``; the dwell runs on ``clock``.
        Labels outside a frame's top-k count as 0 for that frame, which only lowers averages:
        a label must be consistently near the top to win.
        """
        now = self.clock()
        self._frames.append({(p.index, p.label): float(p.score) for p in top})
        label, score, index = self.smoothed()
        if self.current is None:
            # the first state is published at once: subscribers should not wait for the dwell
            if len(self._frames) < self.window and label == self.unknown_label and self.window > 1:
                return None
            self.current = State(label, score, timestamp, index)
            return self.current
        if label == self.current.label:
            self._candidate = None
            self.current = State(label, score, self.current.since, index)  # score follows; not a change
            return None
        if self._candidate is None or self._candidate[0] != label:
            self._candidate = (label, now)
        if now - self._candidate[1] >= self.min_dwell:
            self.current = State(label, score, timestamp, index)
            self._candidate = None
            return self.current
        return None
