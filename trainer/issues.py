"""Dataset health: likely label errors, outliers, train/val/test leakage and confused classes.

Everything comes from one pass of the frozen backbone over every photo (pooled features, as
phase 1 of training caches them): a logistic-regression head is cross-validated on those
features so each photo gets *out-of-fold* class probabilities (a model that never saw it),
and cleanlab ranks the photos whose given label those probabilities disagree with. Seconds to
minutes on a CPU, instead of one full training per fold.

- ``label``: cleanlab's ``find_label_issues``; score = its label-quality score (low = suspect),
  suggested label = the out-of-fold top-1.
- ``outlier``: a photo far from every class centroid (cosine distance more than 3 standard
  deviations above the dataset's mean); score = cleanlab's out-of-distribution score.
- ``leakage``: two photos in different splits whose features are nearly identical (cosine
  similarity >= ``duplicate_similarity``): the held-out figure is then partly a train figure.
- confused class pairs: off-diagonal cells of the out-of-fold confusion matrix (summary only).

Nothing is moved or relabelled: the output is issues.csv, summary.json and issues.html.
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ..device.core.errors import EdgesightError, UsageError
from .dataset import Dataset

log = logging.getLogger(__name__)

ISSUES_CSV = "issues.csv"
ISSUES_HTML = "issues.html"
SUMMARY_JSON = "summary.json"
# Cosine of the pooled MobileNetV2 features (160 px, shared weights) of a flowers5 photo and an
# edited copy, measured: re-encoded 0.97, +20 brightness 0.95, 95% crop 0.92, 90% crop 0.90,
# mirrored 0.90-0.97 (nine photos); the closest two *different* photos of the 209 (a burst of
# one flower) 0.86, the 99th percentile of nearest neighbours 0.84. 0.88 lies between: it
# catches mirror images and light crops, which the import's perceptual hash misses, and not two
# photos of a kind. A resized copy (0.80-0.91: the features follow the resolution) is what that
# hash catches instead, so the two checks cover each other.
DUPLICATE_SIMILARITY = 0.88
OUTLIER_SIGMAS = 3.0
CONFUSED_RATE = 0.1  # a pair is listed when this share of a class's photos go to the other class
FOLDS = 5


@dataclass
class Issue:
    """One row of issues.csv."""

    kind: str  # label | outlier | leakage
    path: Path
    label: str
    split: str
    suggested: str
    score: float  # lower = more likely a real problem
    detail: str = ""


@dataclass
class Findings:
    """Everything one ``data issues`` pass found."""

    issues: list[Issue]
    confused: list[tuple[str, str, int, float]]  # (given, predicted, count, share of given)
    oof_accuracy: float
    images: int
    out_dir: Path
    labels: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)


def _check_classes(dataset: Dataset) -> None:
    present = sorted(set(dataset.targets))
    if len(present) < 2:
        only = dataset.labels[present[0]] if present else "none"
        raise EdgesightError(
            f"{dataset.root}: has one class ({only}); label issues need photos of at least two classes"
        )
    counts = np.bincount(np.array(dataset.targets), minlength=len(dataset.labels))
    small = [dataset.labels[i] for i in present if counts[i] < 2]
    if small:
        raise EdgesightError(f"{dataset.root}: class {small[0]!r} has one photo; cross-validation needs at least two")


def backbone_features(dataset: Dataset, weights: str | None = None, run_dir: str | Path | None = None) -> np.ndarray:
    """[N, D] pooled backbone features of every photo, L2-normalised.

    ``run_dir``: the run's own (fine-tuned) model and input size; else MobileNetV2 1.0 at 160 px
    with ``weights`` (imagenet, or a local weights file such as the shared one).
    """
    from .backend import load_tensorflow
    from .config import TrainConfig
    from .inputs import Rows, load_images
    from .model import build_model
    from .train import MODEL_FILE, compute_features

    _, keras = load_tensorflow()
    if run_dir is not None:
        from .export import read_run

        info = read_run(Path(run_dir))
        model = keras.models.load_model(Path(run_dir) / MODEL_FILE)
        size, fit = int(info["config"]["size"]), info["config"]["fit"]
    else:
        cfg = TrainConfig(weights=weights or "imagenet")
        model = build_model(cfg, len(dataset.labels))
        size, fit = cfg.size, cfg.fit
    x = Rows(load_images(list(dataset.paths), size, fit))
    features = compute_features(model, x).array().astype(np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def out_of_fold(features: np.ndarray, targets: np.ndarray, seed: int = 0) -> np.ndarray:
    """[N, classes] probabilities, each row from a logistic regression not trained on that photo."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = int(min(FOLDS, np.bincount(targets)[np.unique(targets)].min()))
    head = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(head, features, targets, cv=cv, method="predict_proba")


def _label_issues(dataset: Dataset, targets: np.ndarray, probs: np.ndarray, names: list[str]) -> list[Issue]:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    quality = get_label_quality_scores(targets, probs)
    ranked = find_label_issues(targets, probs, return_indices_ranked_by="self_confidence")
    return [
        Issue(
            "label",
            dataset.paths[i],
            names[targets[i]],
            dataset.splits[i],
            names[int(probs[i].argmax())],
            round(float(quality[i]), 4),
            f"out-of-fold p(given) {probs[i, targets[i]]:.2f}, p(suggested) {probs[i].max():.2f}",
        )
        for i in ranked
    ]


def _outliers(dataset: Dataset, features: np.ndarray, targets: np.ndarray, names: list[str]) -> list[Issue]:
    from cleanlab.outlier import OutOfDistribution

    classes = np.unique(targets)
    centroids = np.stack([features[targets == c].mean(axis=0) for c in classes])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    distance = 1.0 - features @ centroids.T  # cosine distance to each class centroid
    nearest = distance.min(axis=1)
    limit = nearest.mean() + OUTLIER_SIGMAS * nearest.std()
    k = int(min(10, len(features) - 1))
    with contextlib.redirect_stdout(io.StringIO()):  # cleanlab prints progress; stdout is the summary's
        ood = OutOfDistribution(params={"k": k}).fit_score(features=features.astype(np.float32))
    found = [
        Issue(
            "outlier",
            dataset.paths[i],
            names[targets[i]],
            dataset.splits[i],
            names[int(classes[distance[i].argmin()])],
            round(float(ood[i]), 4),
            f"cosine distance {nearest[i]:.3f} to the nearest class centre (limit {limit:.3f})",
        )
        for i in np.nonzero(nearest > limit)[0]
    ]
    return sorted(found, key=lambda issue: issue.score)


def _leakage(dataset: Dataset, features: np.ndarray, names: list[str], similarity: float) -> list[Issue]:
    """Pairs in different splits at or above ``similarity``, one row per pair (chunked: N can be large)."""
    splits = np.array(dataset.splits)
    found: list[Issue] = []
    for start in range(0, len(features), 512):
        block = features[start : start + 512] @ features.T
        for r, j in zip(*np.nonzero(block >= similarity)):
            i = start + int(r)
            if j <= i or splits[i] == splits[j]:
                continue
            found.append(
                Issue(
                    "leakage",
                    dataset.paths[i],
                    names[dataset.targets[i]],
                    dataset.splits[i],
                    names[dataset.targets[j]],
                    round(1.0 - float(block[r, j]), 4),
                    f"near-duplicate of {dataset.paths[j]} ({dataset.splits[j]}), cosine {block[r, j]:.3f}",
                )
            )
    return sorted(found, key=lambda issue: issue.score)


def _confused(targets: np.ndarray, probs: np.ndarray, names: list[str]) -> list[tuple[str, str, int, float]]:
    predicted = probs.argmax(axis=1)
    pairs = []
    for given in np.unique(targets):
        rows = targets == given
        for other in np.unique(predicted[rows]):
            if other == given:
                continue
            count = int(np.sum(predicted[rows] == other))
            share = count / int(rows.sum())
            if share >= CONFUSED_RATE:
                pairs.append((names[given], names[other], count, round(share, 3)))
    return sorted(pairs, key=lambda p: -p[3])


def find_issues(
    dataset_dir: str | Path,
    *,
    weights: str | None = None,
    run_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    duplicate_similarity: float = DUPLICATE_SIMILARITY,
    features: np.ndarray | None = None,
) -> Findings:
    """Rank the dataset's likely problems and write issues.csv, summary.json and issues.html.

    ``features`` (already computed, L2-normalised) skips the backbone pass (tests, notebooks).
    """
    if weights is not None and run_dir is not None:
        raise UsageError("--weights and --run contradict each other (the run's model has its own weights)")
    if not 0.0 < duplicate_similarity <= 1.0:
        raise UsageError(f"--duplicate-similarity {duplicate_similarity:g}: expected a value in (0, 1]")
    dataset = Dataset.load(dataset_dir)
    _check_classes(dataset)
    out = Path(out_dir) if out_dir is not None else dataset.root / "issues"
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    if features is None:
        features = backbone_features(dataset, weights, run_dir)
    targets = np.array(dataset.targets, dtype=np.int64)
    names = list(dataset.labels)
    probs = np.zeros((len(targets), len(names)))
    present = np.unique(targets)  # labels.txt may list a class without photos
    remap = {int(c): k for k, c in enumerate(present)}
    dense = np.array([remap[int(t)] for t in targets])
    probs[:, present] = out_of_fold(features, dense)
    issues = [
        *_label_issues(dataset, targets, probs, names),
        *_outliers(dataset, features, targets, names),
        *_leakage(dataset, features, names, duplicate_similarity),
    ]
    counts = {kind: sum(i.kind == kind for i in issues) for kind in ("label", "outlier", "leakage")}
    findings = Findings(
        issues,
        _confused(targets, probs, names),
        round(float(np.mean(probs.argmax(axis=1) == targets)), 4),
        len(targets),
        out,
        dataset.labels,
        counts,
    )
    out.mkdir(parents=True, exist_ok=True)
    write_csv(findings, out / ISSUES_CSV)
    write_html(findings, out / ISSUES_HTML)
    summary = {
        "images": findings.images,
        "out_of_fold_accuracy": findings.oof_accuracy,
        "issues": counts,
        "confused_pairs": [{"given": g, "predicted": p, "count": n, "share": s} for g, p, n, s in findings.confused],
        "features": f"run {run_dir}" if run_dir else f"MobileNetV2 1.0 at 160 px, weights {weights or 'imagenet'}",
    }
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return findings


def write_csv(findings: Findings, path: Path) -> None:
    """Ranked rows: label issues (most suspect first), then outliers, then cross-split duplicates."""
    with path.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "kind", "path", "label", "split", "suggested_label", "score", "detail"])
        for rank, i in enumerate(findings.issues, 1):
            writer.writerow([rank, i.kind, str(i.path), i.label, i.split, i.suggested, f"{i.score:.4f}", i.detail])


def _img_src(photo: Path, page_dir: Path) -> str:
    """A relative, URL-quoted src, so the page works when the folder is copied or served."""
    rel = os.path.relpath(photo, page_dir.resolve())
    return quote(rel.replace(os.sep, "/").encode("utf-8", "surrogateescape"))


def _text(value: object) -> str:
    """Printable text of a path or label that may hold undecodable bytes (kept as surrogates)."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def write_html(findings: Findings, path: Path, limit: int = 500) -> None:
    """A page of thumbnails a person scans: one card per issue, given vs suggested label."""

    def e(value: object) -> str:
        return html.escape(_text(value))

    cards = []
    for rank, i in enumerate(findings.issues[:limit], 1):
        name = _text(i.path)
        cards.append(
            f'<div class="card {e(i.kind)}"><img loading="lazy" src="{e(_img_src(i.path, path.parent))}" '
            f'alt="{e(name)}"><p>#{rank} <b>{e(i.kind)}</b> score {i.score:.3f}</p>'
            f"<p>given <b>{e(i.label)}</b> ({e(i.split)}) &rarr; suggested <b>{e(i.suggested)}</b></p>"
            f'<p class="path">{e(name)}</p><p class="detail">{e(i.detail)}</p></div>'
        )
    confused = "".join(f"<li>{e(g)} &rarr; {e(p)}: {n} photo(s), {s:.0%}</li>" for g, p, n, s in findings.confused)
    more = len(findings.issues) - limit
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dataset issues</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 8px; }}
.card {{ width: 200px; border: 1px solid #ccc; padding: 4px; font-size: 12px; }}
.card img {{ width: 200px; height: 150px; object-fit: cover; }}
.label {{ border-color: #d33; }} .outlier {{ border-color: #d90; }} .leakage {{ border-color: #36c; }}
.path, .detail {{ color: #555; word-break: break-all; }}
</style></head><body>
<h1>dataset issues</h1>
<p>{findings.images} photos; out-of-fold accuracy {findings.oof_accuracy:.3f};
{findings.counts.get("label", 0)} likely label error(s), {findings.counts.get("outlier", 0)} outlier(s),
{findings.counts.get("leakage", 0)} cross-split near-duplicate(s). Nothing was moved or relabelled.</p>
<h2>confused classes</h2><ul>{confused or "<li>none above 10%</li>"}</ul>
<h2>issues, most suspect first</h2>
<div class="grid">{"".join(cards)}</div>
{f"<p>... and {more} more in {ISSUES_CSV}</p>" if more > 0 else ""}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
