"""Measure a bundle on a dataset split with the device runtime, and explain its worst mistakes.

Every model file of the bundle is run through ``edgesight.device.classify`` on the photos as the
device would see them (decoded by OpenCV as on the device, fitted by the bundle's contract), so the
figures are those of what ships. The HTML report adds the confusion matrix, per-class
precision/recall/F1 (scikit-learn), float vs int8 agreement, and the most confident mistakes
with Grad-CAM heat maps from the run's Keras model beside occlusion maps from the shipped int8
model. Optional: the corruption sweep (``robustness``) and the adversarial check
(``adversarial``), and the run's training curves where its history is at hand.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..device.classify import apply_temperature, calibration_of
from ..device.core.bundle import ONNX_MODEL, load_bundle
from ..device.core.errors import EdgesightError, UsageError
from ..device.core.preprocess import Fit, fit_to_size, to_rgb
from .adversarial import DEFAULT_EPSILONS, PGD_STEPS, attack_sweep
from .dataset import Dataset
from .evaluation import Evaluation
from .images import read_photo
from .measure import agreement, open_variant, score_frames, summarise
from .report import plot_attacks, write_report
from .robustness import CORRUPTIONS, DEFAULT_SEVERITIES, Variant, plot_sweep, sweep
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
    result.metrics["calibration"] = calibration_figures(result, spec.manifest, precisions)
    return result


def calibration_figures(result: Evaluation, manifest: dict[str, Any], precisions: dict[str, str]) -> dict[str, Any]:
    """ECE and reliability bins of every variant on the split, as the device scores it.

    The device applies the bundle's temperature, so the scores here are already calibrated; with
    a temperature in the manifest the ECE before it is shown too (the scores un-scaled by 1/T).
    """
    from .calibration import ece, reliability

    t = calibration_of(manifest)
    models: dict[str, Any] = {}
    for f, scores in result.scores.items():
        row: dict[str, Any] = {
            "precision": precisions[f],
            "ece": round(ece(scores, result.targets), 4),
            "reliability": reliability(scores, result.targets),
        }
        if t is not None:
            row["ece_without_temperature"] = round(ece(apply_temperature(scores, 1.0 / t), result.targets), 4)
        models[f] = row
    return {"temperature": t, "models": models}


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


def _run_candidate(bundle_manifest: dict[str, Any], run_dir: str | Path | None) -> Path | None:
    """``--run`` if given, else the run directory the manifest records (None for third-party bundles)."""
    recorded = bundle_manifest.get("training", {}).get("run_dir")
    return Path(run_dir) if run_dir else Path(recorded) if recorded else None


def _find_run(bundle_manifest: dict[str, Any], run_dir: str | Path | None, why: str = "Grad-CAM") -> Path | None:
    candidate = _run_candidate(bundle_manifest, run_dir)
    if candidate is not None and (candidate / MODEL_FILE).is_file():
        return candidate
    if run_dir:
        raise UsageError(f"{run_dir}: no model.keras there (needed for {why})")
    return None


def _history(bundle_manifest: dict[str, Any], run_dir: str | Path | None) -> dict[str, list[float]]:
    """The run's per-epoch history (both phases), or {} where the run directory is not at hand."""
    candidate = _run_candidate(bundle_manifest, run_dir)
    if candidate is None:
        return {}
    path = candidate / "history.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable history (%s); the report has no training curves", path, exc)
        return {}
    return {k: [float(x) for x in v] for k, v in data.items() if isinstance(v, list)} if isinstance(data, dict) else {}


def shipped_variants(spec: Any, bundle_dir: Path, *, onnx: bool = True) -> list[Variant]:
    """Device-runtime classifiers for each shipped variant: the CPU .tflite files and model.onnx where present."""
    files = [f for f in spec.manifest["files"] if f.endswith(".tflite") and "edgetpu" not in f]
    if onnx and ONNX_MODEL in spec.manifest["files"] and (bundle_dir / ONNX_MODEL).is_file():
        files.append(ONNX_MODEL)
    models = spec.manifest.get("models", {})
    out = []
    for f in files:
        precision = models.get(f, {}).get("precision") or ("onnx" if f.endswith(".onnx") else f)
        try:
            out.append(Variant(f, str(precision), open_variant(spec, bundle_dir / f)))
        except EdgesightError as exc:
            if not f.endswith(".onnx"):
                raise
            log.warning("%s: not measured (%s)", f, exc)
    return out


def _fitted(paths: list[Path], size: int, fit: Fit) -> np.ndarray:
    return np.stack([fit_to_size(to_rgb(read_photo(p)), size, size, fit) for p in paths])


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
    occlusion: bool = True,
    robustness: bool = False,
    severities: Sequence[int] = DEFAULT_SEVERITIES,
    adversarial: bool = False,
    epsilons: Sequence[float] = DEFAULT_EPSILONS,
    pgd_steps: int = PGD_STEPS,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate and write the report; returns the metrics (also saved as ``metrics.json``).

    ``robustness`` adds the corruption sweep of every shipped variant; ``adversarial`` adds FGSM
    and PGD on the run's Keras model with transfer to the shipped files (needs the run directory).
    """
    say = say or log.info
    bundle_dir = Path(bundle_dir)
    dataset = Dataset.load(dataset_dir)
    spec = load_bundle(bundle_dir)
    why = "the adversarial check" if adversarial else "Grad-CAM"
    run = _find_run(spec.manifest, run_dir, why) if gradcam or adversarial else None
    if adversarial and run is None:
        raise UsageError(
            f"{bundle_dir}: the adversarial check needs the run's model.keras; the bundle's run directory "
            "is not here, pass --run RUN_DIR"
        )
    result = run_models(bundle_dir, dataset, split, top_k)
    report_dir = Path(report_dir) if report_dir else bundle_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    mistakes = worst_mistakes(result, worst)
    size = spec.contract.height if spec.contract else 160
    fit = spec.contract.fit if spec.contract else "centre"
    thumbs = {m["index"]: fit_to_size(to_rgb(read_photo(result.paths[m["index"]])), size, size, fit) for m in mistakes}
    heatmaps: dict[int, np.ndarray] = {}
    occlusions: dict[int, np.ndarray] = {}
    extra: dict[str, Any] = {}
    keras_model = None
    if run is not None and ((gradcam and mistakes) or adversarial):
        from .backend import load_tensorflow

        _, keras = load_tensorflow()
        keras_model = keras.models.load_model(run / MODEL_FILE)
    if keras_model is not None and gradcam and mistakes:
        from .explain import gradcam as grad_cam
        from .explain import overlay

        for m in mistakes:
            predicted = result.labels.index(m["predicted"])
            heatmaps[m["index"]] = overlay(thumbs[m["index"]], grad_cam(keras_model, thumbs[m["index"]], predicted))
    elif gradcam and mistakes:
        log.warning("no run directory with model.keras found; the report has no Grad-CAM (pass --run RUN_DIR)")
    variants: list[Variant] = []
    if occlusion and mistakes or robustness or adversarial:
        variants = shipped_variants(spec, bundle_dir, onnx=robustness)
    if occlusion and mistakes:
        from .explain import occlusion as occlude
        from .explain import overlay

        int8 = next((v for v in variants if v.precision == "int8"), None)
        explainer = int8 or next(v for v in variants if v.file == result.default_model)
        for m in mistakes:
            heat = occlude(explainer.classifier, thumbs[m["index"]], result.labels.index(m["true"]))
            occlusions[m["index"]] = overlay(thumbs[m["index"]], heat)
        extra["occlusion_model"] = explainer.file
    if robustness:
        say(
            f"robustness sweep: {len(CORRUPTIONS)} corruptions x severities {list(severities)} x {len(variants)} models"
        )
        frames = [read_photo(p) for p in result.paths]
        extra["robustness"] = sweep(variants, frames, result.targets, severities=severities, input_side=size)
        plot_sweep(extra["robustness"], report_dir / "robustness.png")
    if adversarial and keras_model is not None and run is not None:
        say(f"adversarial check: FGSM and PGD ({pgd_steps} steps) at eps {list(epsilons)}/255 on {run / MODEL_FILE}")
        x = _fitted(result.paths, size, fit)
        extra["adversarial"] = attack_sweep(
            keras_model,
            x,
            result.targets,
            [v for v in variants if not v.file.endswith(".onnx")],
            epsilons=epsilons,
            steps=pgd_steps,
        )
        extra["adversarial"]["trained_with_fgsm"] = (
            spec.manifest.get("training", {}).get("config", {}).get("adversarial", 0.0)
        )
        plot_attacks(extra["adversarial"], report_dir / "adversarial.png")
    history = _history(spec.manifest, run_dir)
    metrics = {
        **result.metrics,
        "per_class": result.per_class,
        "confusion_matrix": result.confusion.tolist(),
        "worst_mistakes": mistakes,
        "bundle": str(bundle_dir.resolve()),
        "dataset": str(dataset.root.resolve()),
        "default_model": result.default_model,
        "gradcam": bool(heatmaps),
        "occlusion": bool(occlusions),
        **extra,
    }
    write_report(report_dir, spec.manifest, result, metrics, thumbs, heatmaps, occlusions=occlusions, history=history)
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    return metrics
