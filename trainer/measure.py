"""Score images with a bundle's .tflite models through the device's own classifier.

Export and evaluate both measure what ships: the LiteRT runtime, the device's preprocessing and
dequantization, not the Keras model. These helpers turn a list of frames into a score matrix and
the score matrix into the numbers that go into the manifest and the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from ..device.classify import Classifier
from ..device.core.bundle import ModelSpec


def score_frames(classifier: Classifier, frames: Iterable[np.ndarray], order: str = "BGR") -> np.ndarray:
    """[N, classes] dequantized scores; frames are any-size BGR (from read_image) or RGB with ``order``."""
    rows = [classifier.infer(classifier.preprocess(frame, order)) for frame in frames]
    return np.stack(rows) if rows else np.zeros((0, len(classifier.labels)), dtype=np.float32)


def open_variant(spec: ModelSpec, model_path, num_threads: int | None = None) -> Classifier:
    """A classifier for one model file with the labels and contract of ``spec``."""
    return Classifier.open(dataclasses.replace(spec, model_path=model_path), num_threads=num_threads)


def summarise(scores: np.ndarray, targets: np.ndarray, k: int = 3) -> dict[str, float]:
    """Accuracy and top-k accuracy (k capped at the class count) of a score matrix."""
    if not len(targets):
        return {"images": 0}
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {
        "images": int(len(targets)),
        "accuracy": round(float(np.mean(top[:, 0] == targets)), 4),
        f"top{k}_accuracy": round(float(np.mean(np.any(top == targets[:, None], axis=1))), 4),
    }


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """How often two models pick the same top-1, and their largest score difference."""
    if not len(a):
        return {"top1_agreement": float("nan"), "max_score_diff": float("nan")}
    return {
        "top1_agreement": round(float(np.mean(a.argmax(1) == b.argmax(1))), 4),
        "max_score_diff": round(float(np.max(np.abs(a - b))), 4),
    }


def score_distribution(scores: np.ndarray, labels: tuple[str, ...] | list[str]) -> dict[str, object]:
    """Top-1 score histogram (10 bins over 0..1) and predicted-class frequencies.

    Recorded in the manifest so the device can notice when live traffic stops looking like
    the test split (drift).
    """
    top1 = scores.max(axis=1) if len(scores) else np.zeros(0)
    counts, edges = np.histogram(np.clip(top1, 0.0, 1.0), bins=10, range=(0.0, 1.0))
    predicted = np.bincount(scores.argmax(axis=1), minlength=len(labels)) if len(scores) else np.zeros(len(labels))
    total = max(1, len(scores))
    return {
        "images": int(len(scores)),
        "top1_score_histogram": {"edges": [round(float(e), 2) for e in edges], "counts": [int(c) for c in counts]},
        "predicted_class_frequency": {label: round(float(n) / total, 4) for label, n in zip(labels, predicted)},
    }
