"""Calibrated scores: expected calibration error, reliability diagrams, temperature, thresholds.

A softmax score is not a probability until it is checked: fine-tuned networks are usually
over-confident, so a "0.9" is right less than nine times in ten. Temperature scaling (one
number T, logits divided by T) fixes most of that without changing any top-1 answer. T is fitted
on the validation split's scores of the model that ships (the int8 model's dequantized
scores, through the device runtime), by minimising the negative log-likelihood; the device
applies it with :func:`edgesight.device.classify.apply_temperature`, the function used here.

Per-class thresholds for a target precision answer "when may the daemon say *roses*?": for
each class, the lowest calibrated score at which the validation photos predicted as that class
are right at least ``target`` of the time. Below it the device reports the no-label state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..device.classify import PROBABILITY_FLOOR, apply_temperature

log = logging.getLogger(__name__)

BINS = 10
T_RANGE = (0.05, 20.0)  # a fitted T outside this means the scores carry no usable confidence
MIN_PREDICTED = 3  # val photos predicted as a class below which its threshold is not estimated


def ece(scores: np.ndarray, targets: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: |accuracy - mean confidence| per top-1 score bin, weighted by bin size."""
    if not len(targets):
        return float("nan")
    confidence = scores.max(axis=1)
    correct = scores.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        rows = which == b
        if rows.any():
            total += rows.mean() * abs(correct[rows].mean() - confidence[rows].mean())
    return float(total)


def reliability(scores: np.ndarray, targets: np.ndarray, bins: int = BINS) -> list[dict[str, float | None]]:
    """Per bin: its range, how many photos fall in it, their mean confidence and accuracy."""
    confidence = scores.max(axis=1)
    correct = scores.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        rows.append(
            {
                "low": round(float(edges[b]), 2),
                "high": round(float(edges[b + 1]), 2),
                "count": int(inside.sum()),
                "confidence": round(float(confidence[inside].mean()), 4) if inside.any() else None,
                "accuracy": round(float(correct[inside].mean()), 4) if inside.any() else None,
            }
        )
    return rows


def nll(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    picked = scores[np.arange(len(targets)), targets]
    return float(-np.mean(np.log(np.maximum(picked, PROBABILITY_FLOOR))))


def fit_temperature(scores: np.ndarray, targets: np.ndarray) -> float:
    """The T in :data:`T_RANGE` minimising the NLL of ``apply_temperature(scores, T)`` (1.0 with no data).

    One-dimensional and smooth in log T, so a bounded scalar search is enough.
    """
    if not len(targets):
        return 1.0
    from scipy.optimize import minimize_scalar

    def loss(log_t: float) -> float:
        return nll(apply_temperature(scores, float(np.exp(log_t))), targets)

    low, high = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    found = minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    t = float(np.exp(found.x))
    # never worse than leaving the scores alone (the search is over a bounded interval)
    return t if loss(found.x) <= loss(0.0) else 1.0


def class_thresholds(
    scores: np.ndarray, targets: np.ndarray, labels: tuple[str, ...] | list[str], target: float
) -> tuple[dict[str, float], list[str]]:
    """Per class, the lowest top-1 score at which predictions of that class reach ``target`` precision.

    Returns (thresholds by label, notes). A class predicted fewer than :data:`MIN_PREDICTED`
    times on the split gets no threshold (the state's own threshold applies); one that never
    reaches the target at any score gets 1.0 (never reported on its own) and a note.
    """
    thresholds: dict[str, float] = {}
    notes: list[str] = []
    predicted = scores.argmax(axis=1)
    top = scores.max(axis=1)
    for index, label in enumerate(labels):
        rows = predicted == index
        if rows.sum() < MIN_PREDICTED:
            notes.append(f"{label}: predicted {int(rows.sum())} time(s) on the split, too few for a threshold")
            continue
        order = np.argsort(-top[rows], kind="stable")
        s = top[rows][order]
        right = (targets[rows] == index)[order]
        precision = np.cumsum(right) / np.arange(1, len(s) + 1)  # keeping the k best-scored
        ok = np.nonzero(precision >= target)[0]
        if not len(ok):
            thresholds[label] = 1.0
            notes.append(f"{label}: never reaches precision {target:g}; threshold 1.0 (never reported)")
            continue
        # the largest k whose precision holds; its score is the threshold (ties included)
        thresholds[label] = round(float(s[ok[-1]]), 4)
    return thresholds, notes


def reliability_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str = "") -> Path:
    """One reliability diagram (accuracy against confidence per bin) for each named score matrix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    for name, (scores, targets) in curves.items():
        rows = [r for r in reliability(scores, targets) if r["count"]]
        ax.plot(
            [float(r["confidence"] or 0.0) for r in rows],  # rows with a count have both
            [float(r["accuracy"] or 0.0) for r in rows],
            marker="o",
            label=f"{name} (ECE {ece(scores, targets):.3f})",
        )
    ax.set_xlabel("confidence (top-1 score)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title or "reliability")
    ax.legend(loc="upper left", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@dataclass
class Calibration:
    """What :func:`calibrate` found: the manifest sections and the figures a report shows."""

    section: dict[str, Any]  # manifest "calibration"
    thresholds: dict[str, float]  # manifest "thresholds" (empty without a target precision)
    notes: list[str]
    plot: Path | None = None


def calibrate(
    val: tuple[np.ndarray, np.ndarray],
    held_out: dict[str, tuple[np.ndarray, np.ndarray]],
    labels: tuple[str, ...] | list[str],
    *,
    fitted_on: str,
    target_precision: float | None = None,
    plot_path: Path | None = None,
) -> Calibration:
    """Fit T on ``val`` (scores, targets) of the shipped model; ECE before/after per held-out variant.

    ``held_out`` maps a variant name (int8, fp16, float) to its test-split (scores, targets);
    ``ece_before``/``ece_after`` of the manifest are those of ``fitted_on`` on the test split
    (on the validation split when the test split is empty).
    """
    val_scores, val_y = val
    t = fit_temperature(val_scores, val_y)
    per_variant: dict[str, dict[str, float]] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (scores, targets) in held_out.items():
        if not len(targets):
            continue
        scaled = apply_temperature(scores, t)
        per_variant[name] = {"ece_before": round(ece(scores, targets), 4), "ece_after": round(ece(scaled, targets), 4)}
        curves[f"{name}"] = (scores, targets)
        curves[f"{name}, T={t:.2f}"] = (scaled, targets)
    main = per_variant.get(fitted_on) or {
        "ece_before": round(ece(val_scores, val_y), 4),
        "ece_after": round(ece(apply_temperature(val_scores, t), val_y), 4),
    }
    section: dict[str, Any] = {
        "temperature": round(t, 4),
        **main,
        "fitted_on": f"val split, {fitted_on}",
        "val_images": int(len(val_y)),
        "measured_on": "test split" if fitted_on in per_variant else "val split (no test images)",
        "bins": BINS,
        "variants": per_variant,
    }
    thresholds: dict[str, float] = {}
    notes: list[str] = []
    if target_precision is not None:
        thresholds, notes = class_thresholds(apply_temperature(val_scores, t), val_y, labels, target_precision)
        section["target_precision"] = target_precision
    plot = None
    if plot_path is not None and curves:
        plot = reliability_plot(curves, plot_path, f"reliability (T fitted on val: {t:.2f})")
    return Calibration(section, thresholds, notes, plot)
