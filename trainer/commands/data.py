"""``edgesight data import|report``: check, de-duplicate and split a photo folder; summarise it."""

from __future__ import annotations

import argparse
from collections import Counter

from ..dataset import DUPLICATES_CSV, REJECTS_CSV, SPLITS, Dataset, import_dataset, parse_split


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    imp = sub.add_parser(
        "import",
        help="check a folder of labelled photos and write a split dataset manifest",
        description="SRC is a folder per class, or Images/ + Annotations/ (Pascal VOC) "
        "[+ labels.txt]. Unusable files are moved to DATASET_DIR/rejects/, never deleted.",
    )
    imp.add_argument("src", metavar="SRC", help="folder of labelled photos")
    imp.add_argument("dataset", metavar="DATASET_DIR", help="where the manifest, labels and reports go")
    imp.add_argument("--split", default="80/10/10", help="train/val/test proportions (default 80/10/10)")
    imp.add_argument("--seed", type=int, default=0, help="seed of the stratified split (default 0)")
    imp.add_argument(
        "--min-size",
        type=int,
        default=32,
        metavar="PX",
        help="reject images whose shorter side is below PX (default 32)",
    )
    imp.add_argument(
        "--near-distance",
        type=int,
        default=4,
        metavar="BITS",
        help="perceptual-hash distance for near duplicates (default 4; -1 turns it off)",
    )
    imp.add_argument(
        "--crop-objects",
        action="store_true",
        help="Pascal VOC: one sample per bounding box (crops written under DATASET_DIR/crops)",
    )
    imp.add_argument("--no-move", action="store_true", help="list rejects without moving them aside")
    rep = sub.add_parser("report", help="class counts, imbalance, image sizes, duplicates and rejects")
    rep.add_argument("dataset", metavar="DATASET_DIR")


def _print_counts(labels: list[str] | tuple[str, ...], rows: list[tuple[str, str]]) -> None:
    counts = Counter(rows)
    width = max(8, *(len(label) for label in labels))
    print(f"{'class':<{width}}  " + "  ".join(f"{s:>5}" for s in SPLITS) + "  total")
    for label in labels:
        per = [counts[(label, s)] for s in SPLITS]
        print(f"{label:<{width}}  " + "  ".join(f"{n:>5}" for n in per) + f"  {sum(per):>5}")
    totals = [sum(counts[(label, s)] for label in labels) for s in SPLITS]
    print(f"{'all':<{width}}  " + "  ".join(f"{n:>5}" for n in totals) + f"  {sum(totals):>5}")


def run(args: argparse.Namespace) -> int:
    if args.action == "import":
        result = import_dataset(
            args.src,
            args.dataset,
            split=parse_split(args.split),
            seed=args.seed,
            min_size=args.min_size,
            near_distance=args.near_distance,
            crop_objects=args.crop_objects,
            move_rejects=not args.no_move,
        )
        _print_counts(result.labels, [(s.label, s.split) for s in result.samples])
        kinds = Counter(d.kind for d in result.duplicates)
        where = "not moved" if args.no_move else f"moved to {result.dataset_dir / 'rejects'}"
        print(f"rejected {len(result.rejects)} file(s) ({where}; reasons in {result.dataset_dir / REJECTS_CSV})")
        print(
            f"left out {kinds['exact']} exact and {kinds['near']} near duplicate(s) and {kinds['conflict']} "
            f"label-conflict file(s) (see {result.dataset_dir / DUPLICATES_CSV})"
        )
        print(f"wrote {result.dataset_dir / 'dataset.json'}")
        return 0
    return report(Dataset.load(args.dataset))


def report(dataset: Dataset) -> int:
    """Print what a person checks before training: balance, sizes, what was left out and why."""
    manifest = dataset.manifest
    labels = dataset.labels
    _print_counts(labels, [(labels[t], s) for t, s in zip(dataset.targets, dataset.splits)])
    per_class = Counter(dataset.targets)
    smallest, largest = min(per_class.values()), max(per_class.values())
    print(f"imbalance ratio (largest/smallest class): {largest / smallest:.2f}")
    edges = [0, 64, 128, 256, 512, 1024, 2048, 10**9]
    sides = [min(row["width"], row["height"]) for row in manifest["samples"]]
    print(
        "shorter side (px):  "
        + "  ".join(
            f"{lo}-{hi - 1 if hi < 10**9 else ''}: {sum(lo <= s < hi for s in sides)}"
            for lo, hi in zip(edges, edges[1:])
            if any(lo <= s < hi for s in sides)
        )
    )
    duplicates = manifest.get("duplicates", [])
    kinds = Counter(d["kind"] for d in duplicates)
    print(f"duplicates left out: {kinds['exact']} exact, {kinds['near']} near; label conflicts: {kinds['conflict']}")
    for entry in duplicates:
        if entry["kind"] == "conflict":
            print(f"  conflict: {entry['path']} ({' vs '.join(entry['labels'])})")
    rejects = manifest.get("rejects", [])
    reasons = Counter(r["reason"].split(" (")[0] for r in rejects)
    print(f"rejected: {len(rejects)}" + "".join(f"\n  {n} x {reason}" for reason, n in reasons.most_common()))
    return 0
