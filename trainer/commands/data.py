"""``edgesight data import|report``: check, de-duplicate and split a photo folder; summarise it."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable

from ..dataset import (
    DUPLICATES_CSV,
    MANIFEST,
    REJECTS_CSV,
    REJECTS_DIR,
    SPLITS,
    Dataset,
    ImportResult,
    import_dataset,
    parse_split,
)
from ..images import DEFAULT_MAX_PIXELS
from .output import shown

IMPORT_EXAMPLES = """\
examples:
  edgesight data import ~/photos ds                 # ~/photos/<class>/*.jpg -> ds/dataset.json
  edgesight data import ~/photos ds --split 70/15/15 --seed 1
  edgesight data import voc/ ds --crop-objects      # Pascal VOC: one sample per bounding box
  edgesight data import ~/photos ds --no-move       # list bad files, leave them where they are
"""
REPORT_EXAMPLES = """\
examples:
  edgesight data report ds
"""
DATA_EXAMPLES = IMPORT_EXAMPLES + "  edgesight data report ds\n"


def _verb(
    sub: argparse._SubParsersAction, name: str, help: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def _configure_import(sub: argparse._SubParsersAction) -> None:
    imp = _verb(
        sub,
        "import",
        "check a folder of labelled photos and write a split dataset manifest",
        "SRC is a folder per class, or Images/ + Annotations/ (Pascal VOC) [+ labels.txt].\n"
        "Unusable files are moved to DATASET_DIR/rejects/ (each recorded in rejects.csv\n"
        "first), never deleted; files that cannot be read (permissions) are reported and\n"
        "left in place. Duplicates and label conflicts are listed in duplicates.csv.",
        IMPORT_EXAMPLES,
    )
    imp.add_argument("src", metavar="SRC", help="folder of labelled photos (read; rejects are moved out of it)")
    imp.add_argument("dataset", metavar="DATASET_DIR", help="where the manifest, labels and reports go")
    imp.add_argument(
        "--split",
        default="80/10/10",
        metavar="T/V/T",
        help="train/val/test proportions, per class (default 80/10/10)",
    )
    imp.add_argument("--seed", type=int, default=0, help="random seed of the stratified split (default 0)")
    imp.add_argument(
        "--min-size",
        type=int,
        default=32,
        metavar="PX",
        help="reject images whose shorter side is below PX pixels (default 32)",
    )
    imp.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="reject images whose header claims more than N pixels (width x height), "
        f"without decoding them (default {DEFAULT_MAX_PIXELS}, i.e. 50 megapixels)",
    )
    imp.add_argument(
        "--near-distance",
        type=int,
        default=4,
        metavar="BITS",
        help="perceptual-hash distance in bits at or below which two photos are near duplicates "
        "(default 4; -1 turns near-duplicate search off)",
    )
    imp.add_argument(
        "--crop-objects",
        action="store_true",
        help="Pascal VOC: one sample per bounding box (crops written under DATASET_DIR/crops)",
    )
    imp.add_argument("--no-move", action="store_true", help="list rejects in rejects.csv without moving them aside")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = DATA_EXAMPLES
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    _configure_import(sub)
    rep = _verb(
        sub,
        "report",
        "class counts, imbalance, image sizes, duplicates and rejects",
        "Summarise a dataset written by 'data import': what a person checks before training.",
        REPORT_EXAMPLES,
    )
    rep.add_argument("dataset", metavar="DATASET_DIR", help="a folder holding dataset.json")
    _configure_issues(sub)


# --------------------------------------------------------------------------- data issues
ISSUES_EXAMPLES = """\
examples:
  edgesight data issues ds --weights mobilenet_v2_1.0_160_no_top.weights.h5
  edgesight data issues ds --run runs/first --out ds/issues-first    # the trained model's features
"""


def _configure_issues(sub: argparse._SubParsersAction) -> None:
    issues = _verb(
        sub,
        "issues",
        "rank likely label errors, outliers and train/val/test leakage",
        "Out-of-fold probabilities from a logistic-regression head cross-validated on backbone\n"
        "features, then cleanlab ranks photos whose label disagrees. Writes issues.csv,\n"
        "summary.json and issues.html (thumbnails); nothing is moved or relabelled.",
        ISSUES_EXAMPLES,
    )
    issues.add_argument("dataset", metavar="DATASET_DIR", help="a folder holding dataset.json")
    source = issues.add_mutually_exclusive_group()
    source.add_argument(
        "--weights", metavar="PATH", help="MobileNetV2 backbone weights: imagenet (default) or a local weights file"
    )
    source.add_argument("--run", metavar="RUN_DIR", help="use a trained run's model for the features")
    issues.add_argument("--out", metavar="DIR", help="where the reports go (default DATASET_DIR/issues)")
    issues.add_argument(
        "--duplicate-similarity",
        type=float,
        default=0.97,
        metavar="S",
        help="feature cosine similarity at or above which two photos in different splits are "
        "near-duplicates (default 0.97)",
    )
    issues.add_argument("--show", type=int, default=10, metavar="N", help="issues listed on stdout (default 10)")


def _run_issues(args: argparse.Namespace) -> int:
    from ..issues import ISSUES_CSV, ISSUES_HTML, find_issues

    found = find_issues(
        args.dataset,
        weights=args.weights,
        run_dir=args.run,
        out_dir=args.out,
        duplicate_similarity=args.duplicate_similarity,
    )
    c = found.counts
    print(
        f"{found.images} photos, out-of-fold accuracy {found.oof_accuracy:.3f}: {c['label']} likely label "
        f"error(s), {c['outlier']} outlier(s), {c['leakage']} cross-split near-duplicate(s)"
    )
    for rank, issue in enumerate(found.issues[: max(0, args.show)], 1):
        print(
            f"  {rank:>3} {issue.kind:<7} {issue.score:.3f}  {shown(issue.path)}  "
            f"{shown(issue.label)} -> {shown(issue.suggested)}"
        )
    for given, predicted, count, share in found.confused:
        print(f"  confused: {shown(given)} -> {shown(predicted)} ({count} photo(s), {share:.0%})")
    print(f"wrote {shown(found.out_dir / ISSUES_CSV)} and {shown(found.out_dir / ISSUES_HTML)}; nothing was moved")
    return 0


# --------------------------------------------------------------------------- counts and summaries
def _print_counts(labels: list[str] | tuple[str, ...], rows: list[tuple[str, str]]) -> None:
    counts = Counter(rows)
    width = max(8, *(len(shown(label)) for label in labels))
    print(f"{'class':<{width}}  " + "  ".join(f"{s:>5}" for s in SPLITS) + "  total")
    for label in labels:
        per = [counts[(label, s)] for s in SPLITS]
        print(f"{shown(label):<{width}}  " + "  ".join(f"{n:>5}" for n in per) + f"  {sum(per):>5}")
    totals = [sum(counts[(label, s)] for label in labels) for s in SPLITS]
    print(f"{'all':<{width}}  " + "  ".join(f"{n:>5}" for n in totals) + f"  {sum(totals):>5}")


def _tqdm_progress() -> Callable[[int, int], None]:
    """A progress callback drawing one tqdm bar (on a terminal only)."""
    from tqdm import tqdm

    bar: list = []

    def progress(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc="checking", unit="img", leave=False, disable=None))
        bar[0].update(1)
        if done == total:
            bar[0].close()

    return progress


def _print_import_summary(result: ImportResult, moving: bool) -> None:
    out = result.dataset_dir
    rejected = len(result.rejects)
    if rejected and result.moved:
        where = f"{result.moved} moved to {shown(out / REJECTS_DIR)}; "
    elif rejected:
        where = "not moved; " if not moving else ""
    if rejected:
        print(f"rejected {rejected} file(s) ({where}reasons in {shown(out / REJECTS_CSV)})")
    else:
        print("rejected 0 file(s)")
    if result.unreadable:
        folders = sum(u.folder for u in result.unreadable)
        print(
            f"could not read {len(result.unreadable) - folders} file(s) and {folders} folder(s) "
            "(permission denied or I/O error; left in place, see the warnings above)"
        )
    kinds = Counter(d.kind for d in result.duplicates)
    print(
        f"left out {kinds['exact']} exact and {kinds['near']} near duplicate(s) and {kinds['conflict']} "
        f"label-conflict file(s) (see {shown(out / DUPLICATES_CSV)})"
    )
    print(f"wrote {shown(out / MANIFEST)}")


def run(args: argparse.Namespace) -> int:
    if args.action == "issues":
        return _run_issues(args)
    if args.action == "import":
        result = import_dataset(
            args.src,
            args.dataset,
            split=parse_split(args.split),
            seed=args.seed,
            min_size=args.min_size,
            max_pixels=args.max_pixels,
            near_distance=args.near_distance,
            crop_objects=args.crop_objects,
            move_rejects=not args.no_move,
            progress=_tqdm_progress(),
        )
        _print_counts(result.labels, [(s.label, s.split) for s in result.samples])
        _print_import_summary(result, moving=not args.no_move)
        return 0
    return report(Dataset.load(args.dataset))


def _print_sizes(samples: list[dict]) -> None:
    edges = [0, 64, 128, 256, 512, 1024, 2048, 10**9]
    sides = [min(row["width"], row["height"]) for row in samples]
    print(
        "shorter side (px):  "
        + "  ".join(
            f"{lo}-{hi - 1 if hi < 10**9 else ''}: {sum(lo <= s < hi for s in sides)}"
            for lo, hi in zip(edges, edges[1:])
            if any(lo <= s < hi for s in sides)
        )
    )


def report(dataset: Dataset) -> int:
    """Print what a person checks before training: balance, sizes, what was left out and why."""
    manifest = dataset.manifest
    labels = dataset.labels
    _print_counts(labels, [(labels[t], s) for t, s in zip(dataset.targets, dataset.splits)])
    per_class = Counter(dataset.targets)
    smallest, largest = min(per_class.values()), max(per_class.values())
    print(f"imbalance ratio (largest/smallest class): {largest / smallest:.2f}")
    _print_sizes(manifest["samples"])
    duplicates = manifest.get("duplicates", [])
    kinds = Counter(d["kind"] for d in duplicates)
    print(f"duplicates left out: {kinds['exact']} exact, {kinds['near']} near; label conflicts: {kinds['conflict']}")
    for entry in duplicates:
        if entry["kind"] == "conflict":
            print(f"  conflict: {shown(entry['path'])} ({shown(' vs '.join(entry['labels']))})")
    rejects = manifest.get("rejects", [])
    reasons = Counter(r["reason"].split(" (")[0] for r in rejects)
    print(f"rejected: {len(rejects)}" + "".join(f"\n  {n} x {reason}" for reason, n in reasons.most_common()))
    unreadable = manifest.get("unreadable", [])
    if unreadable:
        print(f"could not read: {len(unreadable)} (left in place)")
    return 0
