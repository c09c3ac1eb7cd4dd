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


CORNER = "true \\ predicted"


def _save_rgb(path: Path, rgb: np.ndarray) -> str:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    return f"{path.parent.name}/{path.name}"


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _mistake_cards(
    mistakes: list[dict[str, Any]], thumbs: dict[int, np.ndarray], heatmaps: dict[int, np.ndarray], images: Path
) -> list[str]:
    """One HTML card per mistake: the photo as the model saw it, its Grad-CAM, true vs predicted."""
    cards = []
    for m in mistakes:
        i = m["index"]
        photo = _save_rgb(images / f"mistake_{i}.jpg", thumbs[i])
        heat = ""
        if i in heatmaps:
            heat = f'<img src="{_save_rgb(images / f"gradcam_{i}.jpg", heatmaps[i])}" alt="Grad-CAM">'
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


def write_report(
    report_dir: Path,
    manifest: dict[str, Any],
    result: Evaluation,
    metrics: dict[str, Any],
    thumbs: dict[int, np.ndarray],
    heatmaps: dict[int, np.ndarray],
) -> Path:
    """Write ``confusion.png``, ``per_class.png``, ``images/`` and ``report.html`` into ``report_dir``."""
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
    cards = _mistake_cards(metrics["worst_mistakes"], thumbs, heatmaps, images)
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
.card{{display:inline-block;vertical-align:top;margin:6px;width:340px}}.card img{{width:160px;margin-right:4px}}</style>
</head><body>
<h1>{html.escape(manifest["name"])} {html.escape(str(manifest["version"]))}</h1>
<p>{html.escape(str(manifest["architecture"]))}<br>split <b>{html.escape(metrics["split"])}</b> of
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
<h2>Most confident mistakes</h2><p>{gradcam_note}</p>
{"".join(cards) or "<p>None: every image was classified correctly.</p>"}
</body></html>
"""
    out = report_dir / "report.html"
    out.write_text(page, encoding="utf-8", errors="backslashreplace")  # a file name need not be UTF-8
    return out
