"""Measure a bundle on a dataset split with the device runtime, and explain its worst mistakes.

Every model file of the bundle is run through ``edgesight.device.classify`` on the photos as the
device would see them (decoded by OpenCV as on the device, fitted by the bundle's contract), so the
figures are those of what ships. The HTML report adds the confusion matrix, per-class
precision/recall/F1 (scikit-learn), float vs int8 agreement, and the most confident mistakes
with Grad-CAM heat maps from the run's Keras model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..device.core.bundle import load_bundle
from ..device.core.errors import UsageError
from ..device.core.preprocess import fit_to_size, to_rgb
from .dataset import Dataset
from .evaluation import Evaluation
from .images import read_photo
from .measure import agreement, open_variant, score_frames, summarise
from .report import write_report
from .train import MODEL_FILE

log = logging.getLogger(__name__)


def run_models(bundle_dir: Path, dataset: Dataset, split: str, top_k: int = 3) -> Evaluation:
    """Score every .tflite of the bundle on ``split`` and compute the figures for the default model."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    spec = load_bundle(bundle_dir)
    if tuple(dataset.labels) != spec.labels:
        raise UsageError(
            f"{dataset.root}: its labels {list(dataset.labels)} differ from the bundle's {list(spec.labels)}"
        )
    paths, targets = dataset.subset(split)
    if not paths:
        raise UsageError(f"{dataset.root}: the {split} split is empty")
    frames = [read_photo(p) for p in paths]
    files = [f for f in spec.manifest["files"] if f.endswith(".tflite") and "edgetpu" not in f]
    scores = {f: score_frames(open_variant(spec, bundle_dir / f), frames) for f in files}
    default = spec.manifest["default_model"]
    result = Evaluation(spec.labels, paths, targets, scores, default)
    precisions = {f: spec.manifest.get("models", {}).get(f, {}).get("precision", f) for f in files}
    result.metrics = {
        "split": split,
        "images": len(paths),
        "models": {f: {"precision": precisions[f], **summarise(s, targets, top_k)} for f, s in scores.items()},
    }
    float_file = next((f for f in files if precisions[f] == "float"), None)
    if float_file:
        result.metrics["agreement_with_float"] = {
            f: agreement(scores[float_file], s) for f, s in scores.items() if f != float_file
        }
    predicted = scores[default].argmax(axis=1)
    indices = list(range(len(spec.labels)))
    p, r, f1, support = precision_recall_fscore_support(targets, predicted, labels=indices, zero_division=0)
    result.per_class = [
        {
            "label": label,
            "precision": round(float(p[i]), 4),
            "recall": round(float(r[i]), 4),
            "f1": round(float(f1[i]), 4),
            "support": int(support[i]),
        }
        for i, label in enumerate(spec.labels)
    ]
    result.metrics["macro_f1"] = round(float(np.mean(f1)), 4)
    result.confusion = confusion_matrix(targets, predicted, labels=indices)
    return result


def worst_mistakes(result: Evaluation, limit: int) -> list[dict[str, Any]]:
    """The default model's wrong answers, most confident first."""
    scores = result.scores[result.default_model]
    predicted = scores.argmax(axis=1)
    wrong = np.flatnonzero(predicted != result.targets)
    order = wrong[np.argsort(-scores[wrong, predicted[wrong]], kind="stable")][:limit]
    return [
        {
            "index": int(i),
            "path": str(result.paths[i]),
            "true": result.labels[result.targets[i]],
            "predicted": result.labels[predicted[i]],
            "score": round(float(scores[i, predicted[i]]), 4),
            "true_score": round(float(scores[i, result.targets[i]]), 4),
        }
        for i in order
    ]


def _find_run(bundle_manifest: dict[str, Any], run_dir: str | Path | None) -> Path | None:
    candidate = Path(run_dir) if run_dir else Path(bundle_manifest.get("training", {}).get("run_dir", ""))
    if candidate and (candidate / MODEL_FILE).is_file():
        return candidate
    if run_dir:
        raise UsageError(f"{run_dir}: no model.keras there (needed for Grad-CAM)")
    return None


def evaluate(
    bundle_dir: str | Path,
    dataset_dir: str | Path,
    *,
    split: str = "test",
    report_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    top_k: int = 3,
    worst: int = 8,
    gradcam: bool = True,
) -> dict[str, Any]:
    """Evaluate and write the report; returns the metrics (also saved as ``metrics.json``)."""
    bundle_dir = Path(bundle_dir)
    dataset = Dataset.load(dataset_dir)
    result = run_models(bundle_dir, dataset, split, top_k)
    spec = load_bundle(bundle_dir)
    report_dir = Path(report_dir) if report_dir else bundle_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    mistakes = worst_mistakes(result, worst)
    size = spec.contract.height if spec.contract else 160
    fit = spec.contract.fit if spec.contract else "centre"
    thumbs = {m["index"]: fit_to_size(to_rgb(read_photo(result.paths[m["index"]])), size, size, fit) for m in mistakes}
    heatmaps: dict[int, np.ndarray] = {}
    run = _find_run(spec.manifest, run_dir) if gradcam else None
    if run is not None and mistakes:
        from .backend import load_tensorflow

        _, keras = load_tensorflow()

        from .explain import gradcam as grad_cam
        from .explain import overlay

        model = keras.models.load_model(run / MODEL_FILE)
        for m in mistakes:
            predicted = result.labels.index(m["predicted"])
            heatmaps[m["index"]] = overlay(thumbs[m["index"]], grad_cam(model, thumbs[m["index"]], predicted))
    elif gradcam and mistakes:
        log.warning("no run directory with model.keras found; the report has no Grad-CAM (pass --run RUN_DIR)")
    metrics = {
        **result.metrics,
        "per_class": result.per_class,
        "confusion_matrix": result.confusion.tolist(),
        "worst_mistakes": mistakes,
        "bundle": str(bundle_dir.resolve()),
        "dataset": str(dataset.root.resolve()),
        "default_model": result.default_model,
        "gradcam": bool(heatmaps),
    }
    write_report(report_dir, spec.manifest, result, metrics, thumbs, heatmaps)
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    return metrics
