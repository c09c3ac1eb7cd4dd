"""The evaluation report: PNG plots (matplotlib, Agg) and one self-contained-folder HTML page.

The page links its images by relative path, so the report folder can be copied or zipped and
opened anywhere; nothing is fetched from the network.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from .evaluation import Evaluation


def plot_confusion(confusion: np.ndarray, labels: tuple[str, ...], path: Path, title: str) -> Path:
    """Confusion matrix as a PNG: counts in cells, rows = true class, columns = predicted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    side = max(4.0, 0.6 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(side, side), dpi=110)
    ConfusionMatrixDisplay(confusion, display_labels=list(labels)).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45
    )
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_per_class(per_class: list[dict[str, Any]], path: Path) -> Path:
    """Grouped bars of precision, recall and F1 per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [row["label"] for row in per_class]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(labels) + 2), 3.6), dpi=110)
    for offset, key in zip((-0.27, 0.0, 0.27), ("precision", "recall", "f1")):
        ax.bar(x + offset, [row[key] for row in per_class], width=0.27, label=key)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right")
    ax.set_title("per-class precision, recall, F1")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_attacks(block: dict[str, Any], path: Path) -> Path:
    """Accuracy against ε (pixel levels of 255) for FGSM and PGD: the Keras float model and each shipped file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [0.0, *block["epsilons"]]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=110, sharey=True)
    for ax, name in zip(axes, ("fgsm", "pgd")):
        attack = block["attacks"][name]
        ax.plot(xs, [block["keras_clean"], *attack["keras"].values()], marker="o", label="float (Keras, white-box)")
        for file, accs in attack["transfer"].items():
            clean = block["device_clean"].get(file, float("nan"))
            ax.plot(xs, [clean, *accs.values()], marker="s", linestyle="--", label=f"{file} (transfer)")
        ax.set_title(name.upper())
        ax.set_xlabel("ε (pixel levels of 255)")
        ax.set_xticks(xs)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_history(history: dict[str, list[float]], path: Path) -> Path | None:
    """Loss and accuracy per epoch, phase 1 (head) then phase 2 (fine-tune) on one axis; None if empty."""
    phases = [
        (p, {k[len(p) + 1 :]: v for k, v in history.items() if k.startswith(p + "_")}) for p in ("head", "finetune")
    ]
    phases = [(p, h) for p, h in phases if h.get("loss")]
    if not phases:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=110)
    start = 0
    for phase, h in phases:
        epochs = np.arange(start + 1, start + len(h["loss"]) + 1)
        for ax, key in zip(axes, ("loss", "accuracy")):
            for prefix, style in (("", "-"), ("val_", "--")):
                values = h.get(prefix + key)
                if values:
                    ax.plot(
                        epochs[: len(values)], values, style, marker=".", label=f"{phase} {prefix or 'train '}{key}"
                    )
        start += len(h["loss"])
        if phase == "head" and len(phases) > 1:
            for ax in axes:
                ax.axvline(start + 0.5, color="grey", linewidth=0.8)
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch (phase 1, then phase 2)")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


FAMILIES = {
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v3_small": "MobileNetV3-Small",
    "mobilenet_v3_large": "MobileNetV3-Large",
}


def describe_architecture(manifest: dict[str, Any]) -> str:
    """The manifest's architecture as a sentence: 'MobileNetV2 alpha 1.0, 160x160 input, head: ...'."""
    arch = manifest.get("architecture")
    if not isinstance(arch, dict):
        return str(arch or "architecture not recorded")
    family = arch.get("family")
    if family is None:  # a third-party bundle: its keys as written, readable
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in arch.items())
    size = arch.get("input_size")
    parts = [f"{FAMILIES.get(str(family), family)} alpha {arch.get('alpha')}"]
    if size:
        parts.append(f"{size}x{size} input")
    config = manifest.get("training", {}).get("config", {})
    head = "global average pool"
    if config.get("dropout"):
        head += f" + dropout {config['dropout']:g}"
    head += f" + dense({arch.get('num_classes', len(manifest.get('labels', [])) or '?')}, softmax)"
    parts.append(f"head: {head}")
    if arch.get("weights"):
        parts.append(f"started from {arch['weights']} weights")
    return ", ".join(parts)


def _robustness_html(block: dict[str, Any] | None) -> str:
    """Table (accuracy per corruption and severity for each variant) and the int8 drop against float."""
    if not block:
        return ""
    sev = block["severities"]
    variants = block["variants"]
    header = ["corruption", *(f"{e['precision']} s{s}" for e in variants.values() for s in sev)]
    rows = [["clean", *(e["clean"] for e in variants.values() for _ in sev)]]
    for name in block["corruptions"]:
        rows.append([name.replace("_", " "), *(e["accuracy"][name][str(s)] for e in variants.values() for s in sev)])
    summary = [
        [f, e["precision"], e["clean"], e["mean_corruption_accuracy"], e["relative_to_clean"]]
        for f, e in variants.items()
    ]
    drop = block.get("int8_drop_vs_float")
    drop_html = (
        "<p>int8 accuracy lost against float (points, mean over severities): where quantization hurts.</p>"
        + _table([[k.replace("_", " "), v] for k, v in drop.items()], ["corruption", "float - int8"])
        if drop
        else "<p>No int8 and float pair in the bundle to compare.</p>"
    )
    return (
        "<h2>Robustness to common corruptions</h2><p>Each corruption is applied to the decoded photo before the "
        "device's preprocessing; every shipped file runs on the device runtime.</p>"
        + _table(summary, ["file", "precision", "clean", "mean corruption accuracy", "relative to clean"])
        + _table(rows, header)
        + '<img src="robustness.png" alt="accuracy against severity">'
        + drop_html
    )


def _adversarial_html(block: dict[str, Any] | None) -> str:
    if not block:
        return ""
    eps = [f"{e:g}" for e in block["epsilons"]]
    rows = []
    for name, attack in block["attacks"].items():
        rows.append([f"{name.upper()} float (Keras)", block["keras_clean"], *(attack["keras"][e] for e in eps)])
        for file, accs in attack["transfer"].items():
            rows.append([f"{name.upper()} {file} (transfer)", block["device_clean"][file], *(accs[e] for e in eps)])
    trained = block.get("trained_with_fgsm") or 0
    note = (
        f"This model was trained with FGSM at ε {trained:g}/255 (train --adversarial)."
        if trained
        else "This model was trained on clean photos only; train --adversarial EPS adds FGSM training."
    )
    return (
        "<h2>Adversarial check</h2><p>FGSM and PGD "
        f"({block['pgd_steps']} steps) on the float Keras model; the same uint8 images fed to each shipped "
        f"file through the device runtime (transfer). {html.escape(note)}</p>"
        + _table(rows, ["attack / model", "clean", *(f"ε {e}/255" for e in eps)])
        + '<img src="adversarial.png" alt="accuracy against epsilon">'
    )


CORNER = "true \\ predicted"


def _save_rgb(path: Path, rgb: np.ndarray) -> str:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    return f"{path.parent.name}/{path.name}"


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _mistake_cards(
    mistakes: list[dict[str, Any]],
    thumbs: dict[int, np.ndarray],
    heatmaps: dict[int, np.ndarray],
    images: Path,
    occlusions: dict[int, np.ndarray] | None = None,
) -> list[str]:
    """One HTML card per mistake: the photo as the model saw it, its Grad-CAM and occlusion map, true vs predicted."""
    cards = []
    occlusions = occlusions or {}
    for m in mistakes:
        i = m["index"]
        photo = _save_rgb(images / f"mistake_{i}.jpg", thumbs[i])
        heat = ""
        if i in heatmaps:
            heat = f'<img src="{_save_rgb(images / f"gradcam_{i}.jpg", heatmaps[i])}" alt="Grad-CAM">'
        if i in occlusions:
            heat += f'<img src="{_save_rgb(images / f"occlusion_{i}.jpg", occlusions[i])}" alt="occlusion">'
        cards.append(
            f'<div class="card"><img src="{photo}" alt="photo">{heat}<p>true <b>{html.escape(m["true"])}</b>, '
            f"predicted <b>{html.escape(m['predicted'])}</b> {m['score']:.2f}<br>"
            f"<small>{html.escape(Path(m['path']).name)}</small></p></div>"
        )
    return cards


def _model_rows(metrics: dict[str, Any]) -> tuple[list[list[Any]], list[list[Any]]]:
    """(models table, agreement-with-float table) rows."""
    models = [
        [
            f,
            m["precision"],
            m.get("accuracy", ""),
            next((v for k, v in m.items() if k.startswith("top") and k.endswith("_accuracy")), ""),
        ]
        for f, m in metrics["models"].items()
    ]
    agree = [[f, a["top1_agreement"], a["max_score_diff"]] for f, a in metrics.get("agreement_with_float", {}).items()]
    return models, agree


def _calibration_html(block: dict[str, Any] | None, result: Evaluation, report_dir: Path, split: str) -> str:
    """ECE per variant, and one reliability diagram (``reliability.png``) with a curve per variant."""
    if not block or not block.get("models"):
        return ""
    from .calibration import reliability_plot

    t = block.get("temperature")
    models = block["models"]
    rows = [
        [f, m["precision"], m["ece"], *([m.get("ece_without_temperature", "")] if t is not None else [])]
        for f, m in models.items()
    ]
    header = ["file", "precision", "ECE as shipped", *(["ECE without the temperature"] if t is not None else [])]
    curves = {
        f"{f} ({m['precision']})": (result.scores[f], result.targets) for f, m in models.items() if f in result.scores
    }
    reliability_plot(curves, report_dir / "reliability.png", f"reliability on the {split} split")
    scaled = (
        f"The device divides the logits by the bundle's temperature T = {t:g} (fitted on the validation split at "
        "export), so these are the calibrated scores it reports."
        if t is not None
        else "The bundle has no temperature: these are the raw softmax scores."
    )
    return (
        "<h2>Calibration</h2><p>Expected calibration error (|accuracy - confidence| per top-1 score bin, "
        "weighted by the bin's size; 0 means a 0.9 is right nine times in ten) of each variant on the "
        f"{html.escape(split)} split. {scaled}</p>{_table(rows, header)}"
        '<img src="reliability.png" alt="reliability diagram per variant">'
    )


def write_report(
    report_dir: Path,
    manifest: dict[str, Any],
    result: Evaluation,
    metrics: dict[str, Any],
    thumbs: dict[int, np.ndarray],
    heatmaps: dict[int, np.ndarray],
    *,
    occlusions: dict[int, np.ndarray] | None = None,
    history: dict[str, list[float]] | None = None,
) -> Path:
    """Write ``confusion.png``, ``per_class.png``, ``images/`` and ``report.html`` into ``report_dir``.

    ``metrics`` may carry ``robustness`` and ``adversarial`` blocks (their PNGs are already written by
    evaluate); ``history`` (the run's ``history.json``) adds the training curves.
    """
    images = report_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    labels = result.labels
    plot_confusion(
        result.confusion,
        labels,
        report_dir / "confusion.png",
        f"{manifest['name']} {result.default_model} on {metrics['split']} ({metrics['images']} images)",
    )
    plot_per_class(result.per_class, report_dir / "per_class.png")
    models, agree = _model_rows(metrics)
    per_class = [[r["label"], r["precision"], r["recall"], r["f1"], r["support"]] for r in result.per_class]
    confusion = [[labels[i], *row] for i, row in enumerate(result.confusion.tolist())]
    cards = _mistake_cards(metrics["worst_mistakes"], thumbs, heatmaps, images, occlusions)
    curves = plot_history(history or {}, report_dir / "training.png")
    curves_html = (
        "<h2>Training curves</h2><p>Loss and accuracy per epoch: phase 1 (head on a frozen backbone), then "
        'phase 2 (fine-tuning), from the run\'s history.</p><img src="training.png" alt="training curves">'
        if curves
        else ""
    )
    occlusion_note = (
        f" Beside it: occlusion sensitivity of the true class on {html.escape(str(metrics.get('occlusion_model')))} "
        "through the device runtime (red: covering this part lowered the true class most)."
        if occlusions
        else ""
    )
    agree_html = (
        _table(agree, ["file", "top-1 agreement", "max score difference"])
        if agree
        else "<p>No float model in the bundle.</p>"
    )
    gradcam_note = (
        "Heat maps: Grad-CAM of the predicted class from the run's Keras model."
        if heatmaps
        else "No Grad-CAM: the run directory with model.keras was not found."
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edgesight evaluation: {html.escape(manifest["name"])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#eee}}
.card{{display:inline-block;vertical-align:top;margin:6px;width:500px}}.card img{{width:160px;margin-right:4px}}</style>
</head><body>
<h1>{html.escape(manifest["name"])} {html.escape(str(manifest["version"]))}</h1>
<p>{html.escape(describe_architecture(manifest))}<br>split <b>{html.escape(metrics["split"])}</b> of
{html.escape(metrics["dataset"])}: {metrics["images"]} images, run with the device runtime (LiteRT).
Default model <b>{html.escape(result.default_model)}</b>: macro F1 {metrics["macro_f1"]:.3f}.</p>
<h2>Models</h2>{_table(models, ["file", "precision", "accuracy", "top-k accuracy"])}
<h2>Agreement with the float model</h2>{agree_html}
<h2>Per class ({html.escape(result.default_model)})</h2>
{_table(per_class, ["class", "precision", "recall", "F1", "support"])}
<img src="per_class.png" alt="per-class bars">
<h2>Confusion matrix</h2><p>Rows: true class; columns: predicted.</p>
{_table(confusion, [CORNER, *labels])}
<img src="confusion.png" alt="confusion matrix">
{curves_html}
{_calibration_html(metrics.get("calibration"), result, report_dir, metrics["split"])}
{_robustness_html(metrics.get("robustness"))}
{_adversarial_html(metrics.get("adversarial"))}
<h2>Most confident mistakes</h2><p>{gradcam_note}{occlusion_note}</p>
{"".join(cards) or "<p>None: every image was classified correctly.</p>"}
</body></html>
"""
    out = report_dir / "report.html"
    out.write_text(page, encoding="utf-8", errors="backslashreplace")  # a file name need not be UTF-8
    return out
