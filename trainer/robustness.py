"""Common corruptions of a photo, and a sweep of every shipped model variant over them.

A camera at night, in rain or behind a dirty lens does not see the clean test photos. Each
corruption here is applied to the *decoded photo* (BGR, the camera's own size) before the
device's preprocessing fits it to the model, so the sweep measures exactly what the device
would do with such a frame: ``Classifier.preprocess`` then ``infer`` on its own runtime. Only
numpy and OpenCV are used, so no TensorFlow is needed.

Severities run 1 (barely visible) to 5 (hard for a person too). Parameters that depend on the
picture's scale (blur radii, the far-camera size) are given for the model's input side and
scaled to the photo, so a 500 px photo and a 160 px one are hurt alike after fitting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..device.core.errors import UsageError

SEVERITIES = (1, 2, 3, 4, 5)
DEFAULT_SEVERITIES = (1, 3, 5)

# Per corruption, one parameter per severity 1..5 (see each function for its unit).
PARAMS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (6, 12, 20, 30, 45),  # noise sigma in pixel levels (0..255)
    "defocus_blur": (1, 2, 3, 4.5, 6),  # disk radius in model-input pixels
    "motion_blur": (3, 5, 9, 13, 19),  # horizontal streak length in model-input pixels
    "low_light": (0.6, 0.45, 0.32, 0.22, 0.14),  # exposure factor, with gamma 1.3 on top
    "over_exposure": (1.4, 1.8, 2.3, 2.9, 3.6),  # exposure factor (clipped at white)
    "contrast": (0.7, 0.5, 0.35, 0.24, 0.15),  # fraction of the contrast around the mean kept
    "jpeg": (50, 30, 18, 10, 5),  # JPEG quality
    "rotation": (4, 8, 12, 16, 22),  # degrees (alternating sign per image), mirrored border
    "occlusion": (0.05, 0.1, 0.16, 0.24, 0.33),  # area fraction covered by a grey square
    "downscale": (0.6, 0.45, 0.33, 0.25, 0.18),  # a far camera: short side as a fraction of the input
}
CORRUPTIONS = tuple(PARAMS)


def _scale(frame: np.ndarray, input_side: int) -> float:
    """Photo pixels per model-input pixel (the fit crops the short side to the input)."""
    return min(frame.shape[:2]) / float(input_side)


def _noise(frame: np.ndarray, p: float, rng: np.random.Generator, side: int) -> np.ndarray:
    return np.clip(frame + rng.normal(0.0, p, frame.shape), 0, 255).astype(np.uint8)


def _defocus(frame: np.ndarray, p: float, rng: np.random.Generator, side: int) -> np.ndarray:
    radius = max(1, int(round(p * _scale(frame, side))))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    return cv2.filter2D(frame, -1, disk / disk.sum(), borderType=cv2.BORDER_REFLECT)


def _motion(frame: np.ndarray, p: float, rng: np.random.Generator, side: int) -> np.ndarray:
    length = max(2, int(round(p * _scale(frame, side))))
    kernel = np.full((1, length), 1.0 / length, np.float32)
    return cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT)


def _low_light(frame: np.ndarray, p: float, rng: np.random.Generator, side: int) -> np.ndarray:
    lut = np.clip(255.0 * p * (np.arange(256) / 255.0) ** 1.3, 0, 255).astype(np.uint8)
    return cv2.LUT(frame, lut)


def _over(frame: np.ndarray, p: float, rng: np.random.Generator, side: int) -> np.ndarray:
    return np.clip(frame.astype(np.float32) * p, 0, 255).astype(np.uint8)


def _contrast(frame: np.ndarray, p: float, rng: np.random.Generator, side: int) -> np.ndarray:
    mean = frame.reshape(-1, 3).mean(axis=0)
    return np.clip((frame - mean) * p + mean, 0, 255).astype(np.uint8)


def _jpeg(frame: np.ndarray, p: float, rng: np.random.Generator, side: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(p)])
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
    assert decoded is not None, "OpenCV could not round-trip a JPEG"
    return np.asarray(decoded)


def _rotate(frame: np.ndarray, p: float, rng: np.random.Generator, side: int) -> np.ndarray:
    h, w = frame.shape[:2]
    angle = p if rng.random() < 0.5 else -p
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    return cv2.warpAffine(frame, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _occlude(frame: np.ndarray, p: float, rng: np.random.Generator, side: int) -> np.ndarray:
    """A grey square over ``p`` of the centre crop the model sees, at a random place inside it."""
    h, w = frame.shape[:2]
    short = min(h, w)
    top, left = (h - short) // 2, (w - short) // 2
    edge = max(1, int(round(short * np.sqrt(p))))
    y = top + int(rng.integers(0, short - edge + 1))
    x = left + int(rng.integers(0, short - edge + 1))
    out = frame.copy()
    out[y : y + edge, x : x + edge] = 128
    return out


def _downscale(frame: np.ndarray, p: float, rng: np.random.Generator, side: int) -> np.ndarray:
    h, w = frame.shape[:2]
    factor = min(1.0, p * side / float(min(h, w)))
    small = cv2.resize(frame, (max(1, int(w * factor)), max(1, int(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


FUNCTIONS: dict[str, Callable[[np.ndarray, float, np.random.Generator, int], np.ndarray]] = {
    "gaussian_noise": _noise,
    "defocus_blur": _defocus,
    "motion_blur": _motion,
    "low_light": _low_light,
    "over_exposure": _over,
    "contrast": _contrast,
    "jpeg": _jpeg,
    "rotation": _rotate,
    "occlusion": _occlude,
    "downscale": _downscale,
}


def corrupt(frame: np.ndarray, name: str, severity: int, *, seed: int = 0, input_side: int = 160) -> np.ndarray:
    """``frame`` (BGR uint8, any size) under corruption ``name`` at ``severity`` 1..5; deterministic per seed."""
    if name not in FUNCTIONS:
        raise UsageError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise UsageError(f"severity {severity} is not one of {', '.join(map(str, SEVERITIES))}")
    rng = np.random.default_rng([seed, CORRUPTIONS.index(name), severity])
    return FUNCTIONS[name](frame, PARAMS[name][severity - 1], rng, input_side)


def parse_severities(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"1,3,5"`` -> (1, 3, 5); a usage error names a bad entry."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[int] = []
    for item in items:
        try:
            value = int(str(item).strip())
        except ValueError:
            raise UsageError(f"--severities: {item!r} is not a number from 1 to 5") from None
        if value not in SEVERITIES:
            raise UsageError(f"--severities: {value} is not from 1 to 5")
        if value not in out:
            out.append(value)
    if not out:
        raise UsageError("--severities: give at least one severity, e.g. 1,3,5")
    return tuple(sorted(out))


@dataclass
class Variant:
    """One shipped model file, with the name the report uses for it."""

    file: str
    precision: str  # int8, fp16, float, onnx...
    classifier: Any  # edgesight.device.classify.Classifier


def _accuracy(classifier: Any, frames: list[np.ndarray], targets: np.ndarray) -> float:
    from .measure import score_frames

    scores = score_frames(classifier, frames)
    return round(float(np.mean(scores.argmax(axis=1) == targets)), 4)


def sweep(
    variants: list[Variant],
    frames: list[np.ndarray],
    targets: np.ndarray,
    *,
    severities: Sequence[int] = DEFAULT_SEVERITIES,
    corruptions: Sequence[str] = CORRUPTIONS,
    input_side: int = 160,
) -> dict[str, Any]:
    """Accuracy of each variant, clean and per corruption x severity; the corrupted frames are made once.

    Returns the JSON-ready block: ``{"severities", "corruptions", "variants": {file: {"precision",
    "clean", "accuracy": {corruption: {severity: acc}}, "mean_corruption_accuracy",
    "relative_to_clean"}}, "int8_drop_vs_float": {corruption: points}}``.
    """
    if not frames:
        raise UsageError("the robustness sweep needs at least one image")
    result: dict[str, Any] = {"severities": list(severities), "corruptions": list(corruptions), "variants": {}}
    for v in variants:
        result["variants"][v.file] = {"precision": v.precision, "clean": _accuracy(v.classifier, frames, targets)}
        result["variants"][v.file]["accuracy"] = {}
    for name in corruptions:
        for severity in severities:
            bad = [corrupt(f, name, severity, seed=i, input_side=input_side) for i, f in enumerate(frames)]
            for v in variants:
                acc = _accuracy(v.classifier, bad, targets)
                result["variants"][v.file]["accuracy"].setdefault(name, {})[str(severity)] = acc
    for entry in result["variants"].values():
        means = [float(np.mean(list(per.values()))) for per in entry["accuracy"].values()]
        mca = float(np.mean(means)) if means else float("nan")
        entry["mean_corruption_accuracy"] = round(mca, 4)
        entry["relative_to_clean"] = round(mca / entry["clean"], 4) if entry["clean"] else None
    by_precision = {e["precision"]: e for e in result["variants"].values()}
    if "int8" in by_precision and "float" in by_precision:
        i8, fl = by_precision["int8"], by_precision["float"]
        result["int8_drop_vs_float"] = {
            name: round(
                float(np.mean(list(fl["accuracy"][name].values())) - np.mean(list(i8["accuracy"][name].values()))), 4
            )
            for name in corruptions
        }
        result["int8_drop_vs_float"]["clean"] = round(fl["clean"] - i8["clean"], 4)
    return result


def plot_sweep(block: dict[str, Any], path: Path) -> Path:
    """One small panel per corruption: accuracy against severity, a line per variant (clean at 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = block["corruptions"]
    cols = 5
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.5 * rows), dpi=100, sharey=True, squeeze=False)
    xs = [0, *block["severities"]]
    for ax, name in zip(axes.flat, names):
        for file, entry in block["variants"].items():
            ys = [entry["clean"], *(entry["accuracy"][name][str(s)] for s in block["severities"])]
            ax.plot(xs, ys, marker="o", label=f"{entry['precision']} ({file})")
        ax.set_title(name.replace("_", " "), fontsize=10)
        ax.set_xticks(xs)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.supxlabel("severity (0 = clean)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
