"""Drift: does the live distribution of top-1 scores and classes still look like the test split?

At export the trainer records in the bundle manifest, under ``test_distribution``, a 10-bin
histogram of the int8 model's top-1 scores on the test split (``top1_score_histogram``) and the
frequency of each predicted class (``predicted_class_frequency``). The device keeps the same two
distributions over a sliding window of recent frames and compares them with the Jensen-Shannon
distance (base 2), which is bounded to 0..1, symmetric and defined when a bin is empty -- unlike PSI
or KL, which need an arbitrary smoothing constant the moment the camera sees a class the test split
never produced. The drift score is the larger of the two distances; an alert is raised when it stays
above ``bound`` and cleared only once it falls below ``clear_below`` (hysteresis, so a score
hovering at the bound does not flap the retained MQTT message).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .results import FrameResult

log = logging.getLogger(__name__)

BINS = 10
OTHER = "__other__"  # live classes the reference never predicted


def score_bin(score: float, bins: int = BINS) -> int:
    """Index of the histogram bin (equal width over 0..1) that holds ``score``; 1.0 goes in the last."""
    return min(bins - 1, max(0, int(score * bins)))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance in bits (0 = identical, 1 = disjoint supports) of two count vectors."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.sqrt(max(0.0, 0.5 * kl(p) + 0.5 * kl(q))))


@dataclass(frozen=True)
class Reference:
    """The distribution recorded at export: score histogram and class frequencies (any scale)."""

    score_histogram: tuple[float, ...]
    class_frequencies: Mapping[str, float]

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> Reference | None:
        """The manifest's ``test_distribution``, or None when the bundle has none (e.g. a bare model)."""
        section = manifest.get("test_distribution") if manifest else None
        if not isinstance(section, Mapping):
            return None
        # The trainer writes top1_score_histogram {edges, counts} + predicted_class_frequency;
        # the short names are accepted too (hand-made references, older bundles).
        hist = section.get("score_histogram", section.get("top1_score_histogram"))
        classes = section.get("class_frequencies", section.get("predicted_class_frequency")) or {}
        if isinstance(hist, Mapping):
            edges = hist.get("edges")
            if edges is not None and (
                len(edges) != BINS + 1 or not np.allclose(edges, np.linspace(0, 1, BINS + 1), atol=0.01)
            ):
                log.warning(
                    "manifest test_distribution: histogram edges are not %d equal bins over 0..1; "
                    "drift monitoring is off",
                    BINS,
                )
                return None
            hist = hist.get("counts")
        if not isinstance(hist, (list, tuple)) or len(hist) != BINS or not isinstance(classes, Mapping):
            log.warning(
                "manifest test_distribution is not {top1_score_histogram: {counts: %d numbers}, "
                "predicted_class_frequency: {label: n}}; drift monitoring is off",
                BINS,
            )
            return None
        return cls(tuple(float(v) for v in hist), {str(k): float(v) for k, v in classes.items()})

    def as_manifest(self) -> dict[str, Any]:
        """The manifest form, as the trainer's export writes it."""
        return {
            "top1_score_histogram": {
                "edges": [round(i / BINS, 2) for i in range(BINS + 1)],
                "counts": list(self.score_histogram),
            },
            "predicted_class_frequency": dict(self.class_frequencies),
        }

    @classmethod
    def from_results(cls, top1: list[tuple[str, float]]) -> Reference:
        """Build a reference from (label, score) pairs, the same way the trainer does at export."""
        hist = [0] * BINS
        for _, score in top1:
            hist[score_bin(score)] += 1
        return cls(tuple(float(v) for v in hist), dict(Counter(label for label, _ in top1)))


@dataclass(frozen=True)
class DriftReport:
    """One evaluation of the window against the reference."""

    score: float  # max of the two distances, 0..1
    score_distance: float  # JS distance of the top-1 score histograms
    class_distance: float  # JS distance of the predicted-class frequencies
    samples: int
    active: bool  # alert raised
    bound: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "score_distance": round(self.score_distance, 4),
            "class_distance": round(self.class_distance, 4),
            "samples": self.samples,
            "active": self.active,
            "bound": self.bound,
        }


@dataclass
class DriftMonitor:
    """A consumer of frame results that keeps the sliding window and raises/clears the alert.

    ``on_alert`` is called (from the caller's thread) with the alert payload whenever the alert
    is raised or cleared; the daemon publishes it retained on ``<prefix>/alert``.
    """

    reference: Reference
    window: int = 300
    bound: float = 0.35
    clear_below: float | None = None  # default 0.8 x bound
    min_samples: int = 100
    check_every: int = 10
    on_alert: Callable[[dict[str, Any]], None] | None = None
    clock: Callable[[], float] = time.time  # only stamps ``since`` in the alert (a date): wall time
    _recent: deque = field(init=False, repr=False)
    _hist: np.ndarray = field(init=False, repr=False)
    _classes: Counter = field(init=False, repr=False)
    _seen: int = field(init=False, default=0)
    _active: bool = field(init=False, default=False)
    _since: float | None = field(init=False, default=None)
    _last: DriftReport | None = field(init=False, default=None)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not 0 < self.bound <= 1:
            raise ValueError(f"drift bound must be in (0, 1], got {self.bound}")
        if self.clear_below is None:
            self.clear_below = 0.8 * self.bound
        self._clear_below: float = self.clear_below
        self.min_samples = max(1, min(self.min_samples, self.window))
        self._recent = deque()
        self._hist = np.zeros(BINS, dtype=np.int64)
        self._classes = Counter()
        self._ref_hist = np.asarray(self.reference.score_histogram, dtype=np.float64)
        self._ref_labels = sorted(self.reference.class_frequencies)

    # -- the consumer interface ------------------------------------------------------------
    def __call__(self, result: FrameResult) -> None:
        """Add one frame result's top-1 to the window."""
        best = result.classification.top[0]
        self.add(best.label, best.score)

    def add(self, label: str, score: float) -> DriftReport | None:
        """Add one top-1 (label, score); evaluate every ``check_every`` frames."""
        with self._lock:
            entry = (label, score_bin(score))
            self._recent.append(entry)
            self._hist[entry[1]] += 1
            self._classes[label] += 1
            if len(self._recent) > self.window:
                old_label, old_bin = self._recent.popleft()
                self._hist[old_bin] -= 1
                self._classes[old_label] -= 1
                if not self._classes[old_label]:
                    del self._classes[old_label]
            self._seen += 1
            if self._seen % self.check_every:
                return None
            report, changed = self._evaluate()
        if changed and self.on_alert is not None:
            try:
                self.on_alert(self.alert_payload(report))
            except Exception:  # a broken publisher must not stop classification
                log.exception("drift alert callback failed")
        return report

    # -- evaluation ---------------------------------------------------------------------------
    def _distances(self) -> tuple[float, float]:
        score_d = js_distance(self._hist, self._ref_hist)
        labels = self._ref_labels
        live = np.array(
            [self._classes.get(label, 0) for label in labels]
            + [sum(n for label, n in self._classes.items() if label not in self.reference.class_frequencies)],
            dtype=np.float64,
        )
        ref = np.array([self.reference.class_frequencies[label] for label in labels] + [0.0])
        return score_d, js_distance(live, ref)

    def _evaluate(self) -> tuple[DriftReport, bool]:
        samples = len(self._recent)
        score_d, class_d = self._distances()
        score = max(score_d, class_d)
        changed = False
        if samples >= self.min_samples:
            if not self._active and score > self.bound:
                self._active, self._since, changed = True, self.clock(), True
                log.warning("drift alert: score %.3f > bound %.3f over %d frames", score, self.bound, samples)
            elif self._active and score < self._clear_below:
                self._active, self._since, changed = False, self.clock(), True
                log.info("drift alert cleared: score %.3f < %.3f", score, self._clear_below)
        self._last = DriftReport(score, score_d, class_d, samples, self._active, self.bound)
        return self._last, changed

    def report(self) -> DriftReport | None:
        """The latest evaluation (None until ``check_every`` frames have been seen)."""
        with self._lock:
            return self._last

    @property
    def active(self) -> bool:
        return self._active

    def alert_payload(self, report: DriftReport | None = None) -> dict[str, Any]:
        """The ``<prefix>/alert`` JSON: what is wrong, how badly, since when."""
        report = report or self.report()
        payload: dict[str, Any] = {
            "v": 1,
            "kind": "drift",
            "active": self._active,
            "since": self._since,
            "clear_below": round(float(self.clear_below or 0), 4),
            "window": self.window,
        }
        if report is not None:
            payload.update(report.as_dict())
            payload["message"] = (
                f"live top-1 scores/classes differ from the test split (drift {report.score:.2f} > {self.bound})"
                if report.active
                else f"drift {report.score:.2f} back below {self.clear_below:.2f}"
            )
        return payload

    def stats(self) -> dict[str, Any]:
        """For ``stats`` and ``/api/stats``: the latest report, or the window filling up."""
        report = self.report()
        if report is None:
            return {"score": None, "active": False, "samples": len(self._recent), "bound": self.bound}
        return report.as_dict()
