"""``edgesight evaluate BUNDLE DATASET_DIR``: accuracy, per-class F1, confusion matrix, HTML report."""

from __future__ import annotations

import argparse

from ..dataset import EVAL_SPLITS

EVALUATE_EXAMPLES = """\
examples:
  edgesight evaluate bundles/first ds                  # test split; report in bundles/first/report
  edgesight evaluate bundles/first ds --split heldout --report /tmp/report
  edgesight evaluate bundles/first ds --no-gradcam     # no TensorFlow needed
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EVALUATE_EXAMPLES
    parser.add_argument("bundle", metavar="BUNDLE", help="bundle directory made by 'edgesight export'")
    parser.add_argument("dataset", metavar="DATASET_DIR", help="a dataset made by 'edgesight data import'")
    parser.add_argument(
        "--split",
        default="test",
        choices=EVAL_SPLITS,
        help="which split (default test; heldout = val + test, the photos never trained on)",
    )
    parser.add_argument("--report", metavar="DIR", help="report folder (default BUNDLE/report)")
    parser.add_argument(
        "--run", metavar="RUN_DIR", help="run directory for Grad-CAM (default: the one the bundle was exported from)"
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=3,
        metavar="K",
        help="also report top-K accuracy: the true class among the K best (default 3)",
    )
    parser.add_argument(
        "--worst",
        type=int,
        default=8,
        metavar="N",
        help="the N most confident mistakes shown in the report (default 8)",
    )
    parser.add_argument(
        "--no-gradcam",
        action="store_true",
        help="skip the Grad-CAM heat maps of mistakes (then no TensorFlow is needed)",
    )


def run(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate

    metrics = evaluate(
        args.bundle,
        args.dataset,
        split=args.split,
        report_dir=args.report,
        run_dir=args.run,
        top_k=args.top_k,
        worst=args.worst,
        gradcam=not args.no_gradcam,
    )
    print(f"{metrics['split']} split: {metrics['images']} images, device runtime (LiteRT)")
    for filename, m in metrics["models"].items():
        topk = next((f"{k.split('_')[0]} {v:.3f}" for k, v in m.items() if k.startswith("top")), "")
        print(f"  {filename:<22} {m['precision']:<5} accuracy {m['accuracy']:.3f}  {topk}")
    for filename, a in metrics.get("agreement_with_float", {}).items():
        print(f"  {filename} vs float: top-1 agreement {a['top1_agreement']:.3f}")
    labels = [row["label"] for row in metrics["per_class"]]
    width = max(9, *(len(label) for label in labels))
    print(f"\n{'class':<{width}}  precision  recall     f1  support")
    for row in metrics["per_class"]:
        print(
            f"{row['label']:<{width}}  {row['precision']:>9.3f}  {row['recall']:>6.3f}  {row['f1']:>5.3f}  "
            f"{row['support']:>7}"
        )
    print(f"{'macro F1':<{width}}  {metrics['macro_f1']:>24.3f}")
    print(f"\nconfusion matrix ({metrics['default_model']}; rows true, columns predicted)")
    cell = max(4, *(len(label[:8]) for label in labels))
    print(" " * width + "  " + " ".join(f"{label[:8]:>{cell}}" for label in labels))
    for label, row in zip(labels, metrics["confusion_matrix"]):
        print(f"{label:<{width}}  " + " ".join(f"{n:>{cell}}" for n in row))
    report = args.report or f"{args.bundle}/report"
    print(
        f"\nreport: {report}/report.html ({len(metrics['worst_mistakes'])} mistakes shown"
        f"{', with Grad-CAM' if metrics['gradcam'] else ''})"
    )
    return 0
