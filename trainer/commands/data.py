"""``edgesight data import|report``: check, de-duplicate and split a photo folder; summarise it."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ...device.core.errors import EdgesightError, UsageError
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
from ..fetch import (
    LABEL_COLUMNS,
    SOURCES_CSV,
    URL_COLUMNS,
    FetchOptions,
    FetchResult,
    Tally,
    fetch,
    read_source,
    summary,
)
from ..images import DEFAULT_MAX_PIXELS
from ..importers import FORMATS, FormatOptions
from ..issues import DUPLICATE_SIMILARITY
from .output import shown

IMPORT_EXAMPLES = """\
examples:
  edgesight data import ~/photos ds                 # ~/photos/<class>/*.jpg -> ds/dataset.json
  edgesight data import ~/photos ds --split 70/15/15 --seed 1
  edgesight data import voc/ ds --crop-objects      # Pascal VOC: one sample per bounding box
  edgesight data import ~/photos ds --no-move       # list bad files, leave them where they are
  edgesight data import train.csv ds --filename '{id}.png'   # Kaggle: id,label + images/
  edgesight data import coco/instances.json ds --crop-objects  # COCO: one sample per box
  edgesight data import export.json ds --images ~/ls-photos  # Label Studio (JSON or JSON-MIN)
  edgesight data import yolo/ ds --keep-split       # train/ val/ test/ with class folders, split kept
  edgesight data import ~/photos ds --split 9:1     # train/test 90/10, val carved from train
"""
FETCH_EXAMPLES = """\
examples:
  edgesight data fetch photos.csv raw                # CSV with url,label columns -> raw/<label>/*.jpg
  edgesight data fetch urls/ raw --import ds         # urls/cat.txt, urls/dog.txt; then data import raw ds
  edgesight data fetch cats.txt raw --label cat      # one URL a line, all of one class
  edgesight data fetch list.tsv raw --url-col link --label-col species --workers 4 --per-host 1
  (a second run fetches only what is missing; raw/sources.csv says what happened to each URL)
"""
REPORT_EXAMPLES = """\
examples:
  edgesight data report ds
"""
DATA_EXAMPLES = IMPORT_EXAMPLES + "  edgesight data fetch photos.csv raw --import ds\n  edgesight data report ds\n"


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
        "SRC is a folder per class, or Images/ + Annotations/ (Pascal VOC) [+ labels.txt],\n"
        "a Kaggle-style CSV (id,label) beside an images folder, a COCO JSON, a Label Studio\n"
        "export, or a YOLO-classification tree (train/ val/ test/); the layout is detected.\n"
        "Unusable files are moved to DATASET_DIR/rejects/ (each recorded in rejects.csv\n"
        "first), never deleted; files that cannot be read (permissions) are reported and\n"
        "left in place. Duplicates and label conflicts are listed in duplicates.csv.",
        IMPORT_EXAMPLES,
    )
    imp.add_argument(
        "src", metavar="SRC", help="folder, CSV or JSON of labelled photos (read; rejects are moved out of it)"
    )
    imp.add_argument("dataset", metavar="DATASET_DIR", help="where the manifest, labels and reports go")
    imp.add_argument(
        "--split",
        default="80/10/10",
        metavar="T/V/T",
        help="train/val/test proportions, per class: 80/10/10, 8:1:1, or train/test 90/10 or 9:1 "
        "(val then carved from train: 90/10 is 80/10/10) (default 80/10/10)",
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
    imp.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="the layout of SRC (default: detected): folders, voc, kaggle (CSV + images folder), coco (JSON), "
        "label-studio (JSON or JSON-MIN), yolo (train/ val/ test/ with class folders)",
    )
    imp.add_argument(
        "--keep-split",
        action="store_true",
        help="keep the split the source gives (yolo train/val/test folders, a CSV 'split' column, COCO "
        "*_train/*_val files) instead of drawing one",
    )
    imp.add_argument(
        "--images", metavar="DIR", help="kaggle/coco/label-studio: the folder the file names are relative to"
    )
    imp.add_argument("--id-col", metavar="NAME", help="kaggle: the CSV column of the image ids (default: detected)")
    imp.add_argument("--label-col", metavar="NAME", help="kaggle: the CSV column of the labels (default: detected)")
    imp.add_argument(
        "--filename",
        default="",
        metavar="RULE",
        help="kaggle: the file of an id, e.g. '{id}.png' or '{label}/{id}.jpg' "
        "(default: the id itself, or the id plus .jpg/.png/...)",
    )


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def _configure_fetch(sub: argparse._SubParsersAction) -> None:
    defaults = FetchOptions()
    fet = _verb(
        sub,
        "fetch",
        "download photos from a CSV or list of URLs into a folder per class",
        "SOURCE is a CSV/TSV with a URL column and a label column, a text file of URLs (one a\n"
        "line) for one --label, or a folder of such files named by class (cat.txt, dog.txt).\n"
        "Photos land in DIR/<label>/, which 'data import DIR DATASET_DIR' takes as it is.\n"
        "Each download is judged as a photo before it is kept (an HTML page named .jpg, a\n"
        "truncated or oversized file is a reject); DIR/sources.csv records every URL's\n"
        "status, bytes, sha256, final URL and error. Re-running fetches only what is missing.\n"
        "Exit 0 when DIR holds something from SOURCE, 1 when nothing could be fetched.",
        FETCH_EXAMPLES,
    )
    fet.add_argument("source", metavar="SOURCE", help="CSV/TSV of URLs and labels, a URL list, or a folder of them")
    fet.add_argument("out", metavar="DIR", help="where the photos go, one folder per class (+ sources.csv)")
    fet.add_argument("--import", dest="import_to", metavar="DATASET_DIR", help="then run 'data import DIR DATASET_DIR'")
    fet.add_argument("--split", default="80/10/10", metavar="T/V/T", help="with --import: the split (default 80/10/10)")
    fet.add_argument(
        "--url-col", metavar="NAME", help=f"CSV column of the URLs (default: the first of {', '.join(URL_COLUMNS)})"
    )
    fet.add_argument(
        "--label-col",
        metavar="NAME",
        help=f"CSV column of the labels (default: the first of {', '.join(LABEL_COLUMNS)})",
    )
    fet.add_argument("--label", metavar="CLASS", help="the class of every URL (a URL list, or a CSV without labels)")
    fet.add_argument("--workers", type=int, default=defaults.workers, metavar="N", help="downloads at once (default 8)")
    fet.add_argument(
        "--per-host",
        type=int,
        default=defaults.per_host,
        metavar="N",
        help="downloads at once from one host (default 2)",
    )
    fet.add_argument(
        "--max-mb",
        type=_positive(float),
        default=defaults.max_bytes / 2**20,
        metavar="MB",
        help="size cap per file (default 20)",
    )
    fet.add_argument(
        "--timeout",
        type=_positive(float),
        default=defaults.read_timeout,
        metavar="S",
        help="seconds without data before a download fails (default 30; connecting: at most 10)",
    )
    fet.add_argument(
        "--retries",
        type=int,
        default=defaults.retries,
        metavar="N",
        help="retries on 429/5xx/dropped connections (default 3)",
    )
    fet.add_argument(
        "--max-wait",
        type=_positive(float),
        default=defaults.max_wait,
        metavar="S",
        help="the longest Retry-After honoured; a server asking more is a failure (default 60)",
    )
    fet.add_argument(
        "--retry-rejected",
        action="store_true",
        help="ask again for URLs an earlier run rejected (404, not an image, too large)",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = DATA_EXAMPLES
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    _configure_import(sub)
    _configure_fetch(sub)
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
        default=DUPLICATE_SIMILARITY,
        metavar="S",
        help="feature cosine similarity at or above which two photos in different splits are "
        f"near-duplicates (default {DUPLICATE_SIMILARITY:g})",
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


def _print_import_summary(result: ImportResult, moving: bool, kept_split: bool = False) -> None:
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
    if result.source_split and not kept_split:
        print("the source comes split; this split was drawn anew (--keep-split keeps the given one)")
    print(f"wrote {shown(out / MANIFEST)} ({result.format} layout)")


def _fetch_progress() -> Callable[[Tally], None]:
    """A tqdm bar for downloads: count, megabytes and failures (on a terminal only)."""
    from tqdm import tqdm

    bar: list = []

    def progress(tally: Tally) -> None:
        if not bar:
            bar.append(tqdm(total=tally.total, desc="fetching", unit="url", leave=False, disable=None))
        bar[0].n = tally.done
        bar[0].set_postfix_str(f"{tally.bytes / 1e6:.1f} MB, {tally.failures} failed", refresh=True)
        if tally.done == tally.total:
            bar[0].close()

    return progress


def _print_fetch_summary(result: FetchResult) -> None:
    statuses, kinds = summary(result)
    new_bytes = sum(o.bytes for o in result.outcomes if o.new and o.status == "ok")
    earlier = sum(not o.new and o.status in ("ok", "duplicate") for o in result.outcomes)
    print(
        f"fetched {result.fetched} new photo(s) ({new_bytes / 1e6:.1f} MB); {earlier} already here from an earlier run"
    )
    print(f"{'status':<10} {'urls':>5}")
    for status, count in statuses.items():
        print(f"{status:<10} {count:>5}")
    if kinds:
        print("why not kept:")
        for kind, count in kinds.items():
            print(f"  {count:>4} x {shown(kind)}")
    print(f"wrote {shown(result.out_dir / SOURCES_CSV)} (one row per URL: status, bytes, sha256, final URL, error)")


def _run_fetch(args: argparse.Namespace) -> int:
    for name in ("workers", "per_host"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.retries < 0:
        raise UsageError("--retries must be 0 or more")
    split = parse_split(args.split) if args.import_to else None
    options = FetchOptions(
        workers=args.workers,
        per_host=args.per_host,
        max_bytes=int(args.max_mb * 2**20),
        connect_timeout=min(10.0, args.timeout),
        read_timeout=args.timeout,
        retries=args.retries,
        max_wait=args.max_wait,
        retry_rejected=args.retry_rejected,
    )
    wanted = read_source(args.source, args.url_col, args.label_col, args.label)
    try:
        result = fetch(wanted, args.out, options, progress=_fetch_progress())
    except ModuleNotFoundError as exc:
        if exc.name != "requests":
            raise
        raise UsageError("'data fetch' needs the Python module 'requests'; it comes with the [trainer] extra") from None
    _print_fetch_summary(result)
    if not result.present:
        raise EdgesightError(
            f"{args.source}: nothing could be fetched (reasons above and in {result.out_dir / SOURCES_CSV})"
        )
    if args.import_to and split is not None:
        imported = import_dataset(args.out, args.import_to, split=split, progress=_tqdm_progress())
        _print_counts(imported.labels, [(s.label, s.split) for s in imported.samples])
        _print_import_summary(imported, moving=True)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        return _run_fetch(args)
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
            fmt=args.format,
            keep_split=args.keep_split,
            layout=FormatOptions(
                images=Path(args.images) if args.images else None,
                id_col=args.id_col,
                label_col=args.label_col,
                filename=args.filename,
            ),
        )
        _print_counts(result.labels, [(s.label, s.split) for s in result.samples])
        _print_import_summary(result, moving=not args.no_move, kept_split=args.keep_split)
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
