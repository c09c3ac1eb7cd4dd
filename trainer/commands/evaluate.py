"""``edgesight evaluate BUNDLE DATASET_DIR``: accuracy, per-class F1, confusion matrix, HTML report."""

from __future__ import annotations

import argparse
from typing import Any

from ...device.core.errors import UsageError
from ..dataset import EVAL_SPLITS
from .output import say

EVALUATE_EXAMPLES = """\
examples:
  edgesight evaluate bundles/first ds                  # test split; report in bundles/first/report
  edgesight evaluate bundles/first ds --split heldout --report /tmp/report
  edgesight evaluate bundles/first ds --no-gradcam     # no TensorFlow needed
  edgesight evaluate bundles/first ds --robustness --severities 1,3,5 --no-gradcam
  edgesight evaluate bundles/first ds --adversarial --run runs/first   # FGSM/PGD at 1,2,4,8/255
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

    parser.add_argument(
        "--no-occlusion",
        action="store_true",
        help="skip the occlusion-sensitivity maps of mistakes (computed on the int8 model, device runtime)",
    )
    parser.add_argument(
        "--robustness",
        action="store_true",
        help="also run every shipped model on the split under common corruptions (noise, blur, light, "
        "contrast, JPEG, rotation, occlusion, downscale); no TensorFlow needed",
    )
    parser.add_argument(
        "--severities",
        default="1,3,5",
        metavar="LIST",
        help="corruption severities for --robustness, from 1 to 5, comma-separated (default 1,3,5)",
    )
    parser.add_argument(
        "--adversarial",
        action="store_true",
        help="also attack the run's float Keras model with FGSM and PGD and feed the same images to the "
        "shipped files (transfer); needs the run directory",
    )
    parser.add_argument(
        "--epsilons",
        default="1,2,4,8",
        metavar="LIST",
        help="attack strengths for --adversarial in pixel levels of 255, comma-separated (default 1,2,4,8)",
    )
    parser.add_argument("--pgd-steps", type=int, default=7, metavar="N", help="PGD iterations (default 7)")


def _epsilons(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(item) for item in text.split(","))
    except ValueError:
        raise UsageError(f"--epsilons: {text!r} is not a comma-separated list of numbers") from None
    if not values or any(not 0 < v <= 64 for v in values):
        raise UsageError(f"--epsilons: {text!r}: each must be above 0 and at most 64 pixel levels")
    return values


def _print_robustness(block: dict[str, Any]) -> None:
    variants = block["variants"]
    print(f"\nrobustness (accuracy; severities {','.join(map(str, block['severities']))})")
    columns = [(e["precision"], f) for f, e in variants.items()]
    print(f"{'corruption':<15}" + "".join(f"{p + ' s' + str(s):>11}" for p, _ in columns for s in block["severities"]))
    print(f"{'clean':<15}" + "".join(f"{variants[f]['clean']:>11.3f}" for _, f in columns for _ in block["severities"]))
    for name in block["corruptions"]:
        cells = "".join(
            f"{variants[f]['accuracy'][name][str(s)]:>11.3f}" for _, f in columns for s in block["severities"]
        )
        print(f"{name:<15}{cells}")
    for f, e in variants.items():
        rel = e["relative_to_clean"]
        print(
            f"  {f:<22} {e['precision']:<5} clean {e['clean']:.3f}  mean corruption accuracy "
            f"{e['mean_corruption_accuracy']:.3f}" + (f" ({rel:.2f} of clean)" if rel is not None else "")
        )
    drop = block.get("int8_drop_vs_float")
    if drop:
        worst = sorted(((v, k) for k, v in drop.items() if k != "clean"), reverse=True)[:3]
        print("  int8 vs float, largest drops: " + ", ".join(f"{k} {v:+.3f}" for v, k in worst))


def _print_adversarial(block: dict[str, Any]) -> None:
    eps = [f"{e:g}" for e in block["epsilons"]]
    print(f"\nadversarial ({block['images']} images; eps in pixel levels of 255; PGD {block['pgd_steps']} steps)")
    print(f"{'attack / model':<36}{'clean':>7}" + "".join(f"{'eps ' + e:>8}" for e in eps))
    for name, attack in block["attacks"].items():
        cells = "".join(f"{attack['keras'][e]:>8.3f}" for e in eps)
        print(f"{name.upper() + ' float (Keras)':<36}{block['keras_clean']:>7.3f}{cells}")
        for f, accs in attack["transfer"].items():
            cells = "".join(f"{accs[e]:>8.3f}" for e in eps)
            print(f"{name.upper() + ' ' + f + ' (transfer)':<36}{block['device_clean'][f]:>7.3f}{cells}")


def run(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate
    from ..robustness import parse_severities

    severities = parse_severities(args.severities)
    epsilons = _epsilons(args.epsilons)
    if args.pgd_steps < 1:
        raise UsageError(f"--pgd-steps {args.pgd_steps}: must be at least 1")
    metrics = evaluate(
        args.bundle,
        args.dataset,
        split=args.split,
        report_dir=args.report,
        run_dir=args.run,
        top_k=args.top_k,
        worst=args.worst,
        gradcam=not args.no_gradcam,
        occlusion=not args.no_occlusion,
        robustness=args.robustness,
        severities=severities,
        adversarial=args.adversarial,
        epsilons=epsilons,
        pgd_steps=args.pgd_steps,
        say=say,
    )
    print(f"{metrics['split']} split: {metrics['images']} images, device runtime (LiteRT)")
    for filename, m in metrics["models"].items():
        topk = next((f"{k.split('_')[0]} {v:.3f}" for k, v in m.items() if k.startswith("top")), "")
        print(f"  {filename:<22} {m['precision']:<5} accuracy {m['accuracy']:.3f}  {topk}")
    for filename, a in metrics.get("agreement_with_float", {}).items():
        print(f"  {filename} vs float: top-1 agreement {a['top1_agreement']:.3f}")
    calibration = metrics.get("calibration") or {}
    for filename, c in calibration.get("models", {}).items():
        before = c.get("ece_without_temperature")
        unscaled = f" ({before:.3f} without T = {calibration['temperature']:g})" if before is not None else ""
        print(f"  {filename} calibration: ECE {c['ece']:.3f}{unscaled}")
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
    if "robustness" in metrics:
        _print_robustness(metrics["robustness"])
    if "adversarial" in metrics:
        _print_adversarial(metrics["adversarial"])
    report = args.report or f"{args.bundle}/report"
    print(
        f"\nreport: {report}/report.html ({len(metrics['worst_mistakes'])} mistakes shown"
        f"{', with Grad-CAM' if metrics['gradcam'] else ''}{', with occlusion' if metrics['occlusion'] else ''})"
    )
    return 0
