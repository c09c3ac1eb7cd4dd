"""Import a folder of labelled photos into a checked, de-duplicated, split dataset manifest.

The dataset directory holds ``dataset.json`` (every usable sample with its label and split),
``labels.txt``, ``rejects/`` + ``rejects.csv`` (files that cannot be trained on, moved aside,
never deleted) and ``duplicates.csv`` (exact/near duplicates and label conflicts, which stay
where they are but are left out of the split). Images are referenced, not copied, so a large
photo folder is not duplicated on disk. ``images.load_photo`` is the judge of what is an image
(OpenCV, the device's decoder, gives the pixels).

User data is never lost: each reject is appended to ``rejects.csv`` and flushed to disk *before*
the file is moved, so a crash cannot leave a moved file unrecorded. Files or folders that cannot
be read (permissions, I/O) are not rejects: they are reported and left where they are. Names
that are not UTF-8 keep their original bytes: CSV files are written with ``surrogateescape``
(the raw bytes) and ``dataset.json`` escapes them (``\\udcXX``, which ``json`` reads back to the
same name); a class name that is not UTF-8 becomes a label with the byte shown as ``\\xXX``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..device.core.errors import EdgesightError, ImageError, UsageError
from ..device.core.preprocess import to_rgb
from .images import DEFAULT_MAX_PIXELS, ImageFault, load_photo
from .importers import FORMATS, FormatOptions, cut_crops, detect, read_coco, read_kaggle, read_label_studio, read_yolo
from .layout import SIDECAR_SUFFIXES, Candidate, Discovery, Reject, Unreadable, label_text
from .layout import os_reason as _os_reason
from .layout import visible_files as _visible_files

log = logging.getLogger(__name__)

MANIFEST = "dataset.json"
LABELS = "labels.txt"
REJECTS_DIR = "rejects"
REJECTS_CSV = "rejects.csv"
DUPLICATES_CSV = "duplicates.csv"
CROPS_DIR = "crops"
SPLITS = ("train", "val", "test")
EVAL_SPLITS = (*SPLITS, "heldout", "all")
SCHEMA_VERSION = 1
VOC_IMAGE_DIRS = ("Images", "JPEGImages", "images")
VOC_ANNOTATION_DIRS = ("Annotations", "annotations")
NOTES = (LABELS, "sources.csv")  # files beside the class folders that are not strays (sources.csv: data fetch)


@dataclass
class Sample:
    """One checked image that may be trained on."""

    path: Path
    label: str
    width: int
    height: int
    sha256: str
    phash: int
    origin: Path | None = None
    split: str = ""


@dataclass
class Duplicate:
    """A sample left out of the split: a duplicate of ``kept`` or part of a label conflict."""

    kind: str  # exact | near | conflict
    path: Path
    label: str
    kept: Path | None
    distance: int
    labels: tuple[str, ...] = ()


@dataclass
class ImportResult:
    dataset_dir: Path
    labels: list[str]
    samples: list[Sample]
    rejects: list[Reject] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    format: str = ""  # the layout read (importers.FORMATS)
    source_split: bool = False  # the source came split (kept only with keep_split)

    @property
    def moved(self) -> int:
        """How many rejects were moved under ``rejects/``."""
        return sum(r.moved_to is not None for r in self.rejects)


Progress = Callable[[int, int], None]  # (files checked so far, files to check)


# --------------------------------------------------------------------------- discovery


def _find_voc(src: Path) -> tuple[Path, Path] | None:
    images = next((src / d for d in VOC_IMAGE_DIRS if (src / d).is_dir()), None)
    notes = next((src / d for d in VOC_ANNOTATION_DIRS if (src / d).is_dir()), None)
    return (images, notes) if images and notes else None


def _read_label_order(src: Path) -> list[str] | None:
    path = src / LABELS
    if not path.is_file():
        return None
    labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(set(labels)) != len(labels):
        raise UsageError(f"{path}: a label is listed twice")
    return labels or None


def _voc_objects(xml_path: Path) -> list[tuple[str, tuple[int, int, int, int]]]:
    """(name, (xmin, ymin, xmax, ymax)) for each object of a Pascal VOC annotation."""
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise ImageError(f"{xml_path}: not valid Pascal VOC XML ({exc})") from None
    objects: list[tuple[str, tuple[int, int, int, int]]] = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        try:
            x0, y0, x1, y1 = (int(float(box.findtext(k) or "")) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr]
        except (AttributeError, TypeError, ValueError):
            x0 = y0 = x1 = y1 = 0
        objects.append((name, (x0, y0, x1, y1)))
    return objects


def _class_folders(src: Path, dataset_dir: Path, found: Discovery) -> None:
    """Folder-per-class layout: every visible file of each class folder is a candidate."""
    class_dirs = [
        d
        for d in sorted(src.iterdir())
        if d.is_dir() and not d.name.startswith(".") and d.resolve() != dataset_dir.resolve()
    ]
    for class_dir in class_dirs:
        label = label_text(class_dir.name)
        if label != class_dir.name:
            log.warning("%s: the folder name is not UTF-8; its label is %r", class_dir, label)
        # JSON sidecars (the device's retraining captures) are metadata, not samples: skip, not reject
        found.candidates.extend(
            Candidate(path, label)
            for path in _visible_files(class_dir, found.unreadable)
            if path.suffix.lower() not in SIDECAR_SUFFIXES
        )
    loose = [p.name for p in src.iterdir() if p.is_file() and p.name not in NOTES and not p.name.startswith(".")]
    if loose:
        log.warning("%s: ignoring %d file(s) outside class folders (e.g. %s)", src, len(loose), loose[0])


def _voc_label(image_path: Path, xml_path: Path, crop_objects: bool, found: Discovery) -> list | None:
    """The objects of one VOC photo, or None after recording why the photo cannot be used."""
    if not xml_path.is_file():
        found.rejects.append(Reject(image_path, "", f"no annotation {xml_path.name}"))
        return None
    try:
        objects = _voc_objects(xml_path)
    except ImageError as exc:
        found.rejects.append(Reject(image_path, "", str(exc)))
        return None
    names = sorted({name for name, _ in objects if name})
    if not names:
        found.rejects.append(Reject(image_path, "", f"{xml_path.name} names no object"))
        return None
    if not crop_objects and len(names) > 1:
        reason = f"{xml_path.name} has several classes ({', '.join(names)}); use --crop-objects"
        found.rejects.append(Reject(image_path, "", reason))
        return None
    return objects


def _voc_layout(images_dir: Path, notes_dir: Path, dataset_dir: Path, crop_objects: bool, found: Discovery) -> None:
    for image_path in _visible_files(images_dir, found.unreadable):
        xml_path = notes_dir / image_path.relative_to(images_dir).with_suffix(".xml")
        objects = _voc_label(image_path, xml_path, crop_objects, found)
        if objects is None:
            continue
        if crop_objects:
            cut_crops(image_path, xml_path, objects, dataset_dir / CROPS_DIR, found)
        else:
            (label,) = {name for name, _ in objects if name}
            found.candidates.append(Candidate(image_path, label))


def discover(
    src: Path, dataset_dir: Path, crop_objects: bool, fmt: str = "auto", options: FormatOptions | None = None
) -> Discovery:
    """List candidate samples from any layout :mod:`importers` knows (``fmt``, or detected).

    Also returns the files already known to be unusable (no annotation, several classes in one
    photo, a row naming a missing file), the files and folders that could not be read, and the
    label order from the source's ``labels.txt`` if it has one.
    """
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if not src.exists():
        raise UsageError(f"{src}: no such dataset folder or file")
    if not os.access(src, os.R_OK | (os.X_OK if src.is_dir() else 0)):
        raise UsageError(f"{src}: cannot read it (permission denied)")
    voc = _find_voc(src) if src.is_dir() else None
    fmt = detect(src, voc is not None) if fmt == "auto" else fmt
    if src.is_file() and fmt in ("folders", "voc", "yolo"):
        raise UsageError(f"{src}: not a folder (expected one sub-folder per class, or Images/ + Annotations/)")
    if crop_objects and fmt not in ("voc", "coco"):
        raise UsageError(f"{src}: --crop-objects needs Pascal VOC (Images/ + Annotations/) or COCO boxes, not {fmt}")
    options = options or FormatOptions()
    found = Discovery(order=_read_label_order(src) if src.is_dir() else None, format=fmt)
    if fmt == "voc":
        if voc is None:
            raise UsageError(f"{src}: --format voc needs Images/ (or JPEGImages/) + Annotations/")
        _voc_layout(*voc, dataset_dir, crop_objects, found)
    elif fmt == "kaggle":
        read_kaggle(src, options, found)
    elif fmt == "coco":
        read_coco(src, options, crop_objects, dataset_dir / CROPS_DIR, found)
    elif fmt == "label-studio":
        read_label_studio(src, options, found)
    elif fmt == "yolo":
        read_yolo(src, found)
    else:
        _class_folders(src, dataset_dir, found)
    return found


# --------------------------------------------------------------------------- checks


def _phash(rgb: np.ndarray) -> int:
    import imagehash
    from PIL import Image

    return int(str(imagehash.phash(Image.fromarray(rgb))), 16)


def check_file(
    candidate: Candidate, min_size: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Sample | Reject | Unreadable:
    """Decide whether one file can be trained on.

    A Reject says why not; Unreadable says the file could not be read, so it is not ours to judge.
    """
    path = candidate.path
    try:
        frame, data = load_photo(path, max_pixels)
    except ImageFault as exc:
        return Reject(path, candidate.label, str(exc))
    except OSError as exc:
        return Unreadable(path, _os_reason(exc))
    height, width = frame.shape[:2]
    if min(height, width) < min_size:
        return Reject(path, candidate.label, f"too small ({width}x{height}; the floor is {min_size} px a side)")
    digest = hashlib.sha256(data).hexdigest()
    phash = _phash(to_rgb(frame))
    return Sample(path, candidate.label, width, height, digest, phash, candidate.origin, candidate.split)


# --------------------------------------------------------------------------- duplicates


def _groups(samples: list[Sample], near_distance: int) -> list[list[int]]:
    """Indices grouped by identical content or perceptual-hash distance <= ``near_distance``."""
    parent = list(range(len(samples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    hashes = np.array([s.phash for s in samples], dtype=np.uint64)
    by_digest: dict[str, int] = {}
    for i, sample in enumerate(samples):
        if sample.sha256 in by_digest:
            parent[find(i)] = find(by_digest[sample.sha256])
        else:
            by_digest[sample.sha256] = i
        if near_distance >= 0 and i:
            distances = np.bitwise_count(hashes[:i] ^ hashes[i])
            for j in np.flatnonzero(distances <= near_distance):
                parent[find(i)] = find(int(j))
    groups: dict[int, list[int]] = {}
    for i in range(len(samples)):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def find_duplicates(samples: list[Sample], near_distance: int) -> tuple[list[Sample], list[Duplicate]]:
    """Keep one sample per duplicate group; drop every member of a group whose labels disagree."""
    dropped: set[int] = set()
    report: list[Duplicate] = []
    for group in _groups(samples, near_distance):
        group.sort(key=lambda i: str(samples[i].path))
        labels = tuple(sorted({samples[i].label for i in group}))
        keep = samples[group[0]]
        for i in group:
            sample = samples[i]
            distance = int(np.bitwise_count(np.uint64(sample.phash) ^ np.uint64(keep.phash)))
            if len(labels) > 1:
                report.append(Duplicate("conflict", sample.path, sample.label, None, distance, labels))
                dropped.add(i)
            elif i != group[0]:
                kind = "exact" if sample.sha256 == keep.sha256 else "near"
                report.append(Duplicate(kind, sample.path, sample.label, keep.path, distance, labels))
                dropped.add(i)
    return [s for i, s in enumerate(samples) if i not in dropped], report


# --------------------------------------------------------------------------- split


VAL_OF_TRAIN = 1 / 9  # a two-part split (90/10) carves val from train as 80/10/10 does: 10 of 90


def parse_split(text: str) -> tuple[float, float, float]:
    """Train/val/test fractions that sum to 1, from the spellings people type.

    ``80/10/10``, ``8:1:1`` or ``0.8,0.1,0.1`` give train/val/test; ``90/10`` or ``9:1`` give
    train/test, with val carved from the train part (a ninth of it, so ``90/10`` is ``80/10/10``).
    """
    parts = text.replace(",", "/").replace(":", "/").split("/")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise UsageError(f"--split {text!r}: expected numbers like 80/10/10, 90/10 or 9:1") from None
    if len(values) not in (2, 3) or any(v < 0 for v in values) or values[0] <= 0:
        raise UsageError(
            f"--split {text!r}: expected train/val/test (80/10/10) or train/test (90/10, 9:1), train > 0, none negative"
        )
    if len(values) == 2:
        train, test = values
        values = [train * (1 - VAL_OF_TRAIN), train * VAL_OF_TRAIN, test]
    total = sum(values)
    return tuple(v / total for v in values)  # type: ignore[return-value]


def assign_splits(samples: list[Sample], fractions: tuple[float, float, float], seed: int) -> None:
    """Stratified, seeded split: each class is shuffled and cut by the same fractions.

    Every class with three or more samples gets at least one val and one test sample (when those
    fractions are non-zero), so per-class metrics always exist.
    """
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: str(s.path)):
        by_label.setdefault(sample.label, []).append(sample)
    for label in sorted(by_label):
        members = by_label[label]
        order = rng.permutation(len(members))
        n = len(members)
        n_val = int(round(n * fractions[1]))
        n_test = int(round(n * fractions[2]))
        if n >= 3:
            n_val = max(n_val, 1 if fractions[1] > 0 else 0)
            n_test = max(n_test, 1 if fractions[2] > 0 else 0)
        while n_val + n_test >= n and (n_val or n_test):
            if n_val >= n_test and n_val:
                n_val -= 1
            else:
                n_test -= 1
        for rank, index in enumerate(order):
            members[index].split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"


# --------------------------------------------------------------------------- writing

CSV_ERRORS = "surrogateescape"  # names that are not UTF-8 are written as their original bytes
REJECT_COLUMNS = ["time", "original", "moved_to", "label", "reason"]


class RejectLog:
    """``rejects.csv``, appended one durable row at a time (earlier imports' rows are kept).

    Each row is flushed and fsync'd before the caller moves the file it names, so whatever
    happens next (a crash, a full disk, a kill) a moved file always has its row.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: Any = None
        self._writer: Any = None

    def record(self, reject: Reject, moved_to: Path | None, note: str = "") -> None:
        if self._handle is None:
            new = not self.path.exists() or self.path.stat().st_size == 0
            self._handle = self.path.open("a", newline="", encoding="utf-8", errors=CSV_ERRORS)
            self._writer = csv.writer(self._handle)
            if new:
                self._writer.writerow(REJECT_COLUMNS)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        reason = f"{reject.reason}; {note}" if note else reject.reason
        self._writer.writerow([now, str(reject.path), str(moved_to or ""), reject.label, reason])
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _reject_target(reject: Reject, dataset_dir: Path, src: Path) -> Path | None:
    """Where under ``rejects/`` a rejected file goes (its relative path kept, never overwriting).

    None for our own crops (nothing of the user's to move) and for files already gone.
    """
    path = reject.path
    if dataset_dir.resolve() in path.resolve().parents or not path.exists():
        return None
    try:
        relative = path.resolve().relative_to(src.resolve())
    except ValueError:
        relative = Path(path.name)
    target = dataset_dir / REJECTS_DIR / relative
    stem, suffix, number = target.stem, target.suffix, 1
    while target.exists():
        target = target.with_name(f"{stem}.{number}{suffix}")
        number += 1
    return target


def record_rejects(rejects: list[Reject], dataset_dir: Path, src: Path, move: bool) -> None:
    """Record every reject in ``rejects.csv``; when ``move``, move each aside *after* its row is on disk."""
    book = RejectLog(dataset_dir / REJECTS_CSV)
    try:
        for reject in rejects:
            target = _reject_target(reject, dataset_dir, src) if move else None
            book.record(reject, target)
            if target is None:
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(reject.path), str(target))
            except OSError as exc:
                log.warning("%s: could not move it to %s (%s); left in place", reject.path, target, _os_reason(exc))
                book.record(reject, None, f"not moved: {_os_reason(exc)}")
            else:
                reject.moved_to = target
    finally:
        book.close()


def _rel(path: Path | None, base: Path) -> str | None:
    return None if path is None else os.path.relpath(path.resolve(), base.resolve())


def _check_all(
    candidates: list[Candidate], min_size: int, max_pixels: int, workers: int | None, progress: Progress | None
) -> list[Sample | Reject | Unreadable]:
    """Check every candidate in parallel (decoding releases the GIL), reporting progress."""
    results: list[Sample | Reject | Unreadable] = []
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 2))) as pool:
        for result in pool.map(lambda c: check_file(c, min_size, max_pixels), candidates):
            results.append(result)
            if progress is not None:
                progress(len(results), len(candidates))
    return results


def _warn_unreadable(unreadable: list[Unreadable]) -> None:
    for item in unreadable:
        kind = "folder" if item.folder else "file"
        log.warning("%s: cannot read this %s (%s); left in place, not imported", item.path, kind, item.reason)


def import_dataset(
    src: str | Path,
    dataset_dir: str | Path,
    *,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    min_size: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    near_distance: int = 4,
    crop_objects: bool = False,
    move_rejects: bool = True,
    workers: int | None = None,
    progress: Progress | None = None,
    fmt: str = "auto",
    keep_split: bool = False,
    layout: FormatOptions | None = None,
) -> ImportResult:
    """Check, de-duplicate and split ``src`` into the dataset directory ``dataset_dir``.

    Args:
        src: a folder per class, or ``Images/`` + ``Annotations/`` (Pascal VOC) [+ ``labels.txt``].
        dataset_dir: where the manifest, labels, rejects and reports are written.
        split: train/val/test fractions.
        seed: makes the split reproducible.
        min_size: images with a side shorter than this are rejected.
        max_pixels: images whose header claims more pixels than this are rejected undecoded.
        near_distance: perceptual-hash Hamming distance at or below which two images are near
            duplicates (-1 turns near-duplicate search off).
        crop_objects: VOC or COCO: one sample per bounding box instead of one per photo.
        move_rejects: move rejected files aside (the default) or only list them.
        progress: called with (checked, total) after each file is checked.
        fmt: the layout (:data:`importers.FORMATS`); ``auto`` detects it.
        keep_split: keep the split the source gives (YOLO train/val/test, a CSV split column);
            samples it gives none are drawn by ``split``.
        layout: where a CSV's or JSON's photos are and which columns mean what.
    Returns:
        What was kept, rejected, left unread and reported.
    """
    src, dataset_dir = Path(src), Path(dataset_dir)
    if dataset_dir.exists() and not dataset_dir.is_dir():
        raise UsageError(f"{dataset_dir}: exists and is not a folder")
    dataset_dir.mkdir(parents=True, exist_ok=True)
    found = discover(src, dataset_dir, crop_objects, fmt, layout)
    candidates, rejects, unreadable = found.candidates, found.rejects, found.unreadable
    if not candidates and not rejects:
        _warn_unreadable(unreadable)
        raise UsageError(f"{src}: no images found (expected one sub-folder per class, or Images/ + Annotations/)")
    given_split = any(c.split for c in candidates)
    if keep_split and not given_split:
        raise UsageError(f"{src}: --keep-split needs a source that comes split (train/ val/ test/, a split column)")
    if found.order is not None:
        unknown = sorted({c.label for c in candidates} - set(found.order))
        for candidate in [c for c in candidates if c.label in unknown]:
            rejects.append(Reject(candidate.path, candidate.label, f"class {candidate.label!r} is not in labels.txt"))
        candidates = [c for c in candidates if c.label not in unknown]
    samples: list[Sample] = []
    for checked in _check_all(candidates, min_size, max_pixels, workers, progress):
        if isinstance(checked, Sample):
            samples.append(checked)
        elif isinstance(checked, Reject):
            rejects.append(checked)
        else:
            unreadable.append(checked)
    _warn_unreadable(unreadable)
    samples, duplicates = find_duplicates(samples, near_distance)
    record_rejects(rejects, dataset_dir, src if src.is_dir() else src.parent, move_rejects)
    if not samples:
        raise EdgesightError(
            f"{src}: no usable images ({len(rejects)} rejected; reasons in {dataset_dir / REJECTS_CSV})"
        )
    labels = found.order or sorted({s.label for s in samples})
    if not keep_split:
        for sample in samples:
            sample.split = ""
    assign_splits([s for s in samples if not s.split], split, seed)
    result = ImportResult(dataset_dir, labels, samples, rejects, duplicates, unreadable, found.format, given_split)
    settings = {"seed": seed, "split": dict(zip(SPLITS, split)), "min_size": min_size, "max_pixels": max_pixels}
    settings.update(format=found.format, kept_split=keep_split)
    _write(result, src, {**settings, "near_distance": near_distance})
    return result


def _write_duplicates(dataset_dir: Path, duplicates: list[Duplicate]) -> None:
    with (dataset_dir / DUPLICATES_CSV).open("w", newline="", encoding="utf-8", errors=CSV_ERRORS) as handle:
        writer = csv.writer(handle)
        writer.writerow(["kind", "path", "label", "kept", "phash_distance", "labels"])
        writer.writerows(
            [d.kind, str(d.path), d.label, str(d.kept or ""), d.distance, " ".join(d.labels)] for d in duplicates
        )


def _manifest(result: ImportResult, src: Path, settings: dict[str, Any]) -> dict[str, Any]:
    labels, dataset_dir = result.labels, result.dataset_dir
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": str(src.resolve()),
        **settings,
        "labels": labels,
        "samples": [
            {
                "path": _rel(s.path, dataset_dir),
                "label": s.label,
                "split": s.split,
                "width": s.width,
                "height": s.height,
                "sha256": s.sha256,
                **({"origin": str(s.origin)} if s.origin else {}),
            }
            for s in sorted(result.samples, key=lambda s: (labels.index(s.label), str(s.path)))
        ],
        "duplicates": [
            {**asdict(d), "path": str(d.path), "kept": str(d.kept) if d.kept else None, "labels": list(d.labels)}
            for d in result.duplicates
        ],
        "rejects": [
            {
                "path": str(r.path),
                "moved_to": str(r.moved_to) if r.moved_to else None,
                "label": r.label,
                "reason": r.reason,
            }
            for r in result.rejects
        ],
        "unreadable": [
            {"path": str(u.path), "kind": "folder" if u.folder else "file", "reason": u.reason}
            for u in result.unreadable
        ],
    }


def _write(result: ImportResult, src: Path, settings: dict[str, Any]) -> None:
    """duplicates.csv, labels.txt and (last, atomically) dataset.json."""
    dataset_dir = result.dataset_dir
    _write_duplicates(dataset_dir, result.duplicates)
    (dataset_dir / LABELS).write_text("".join(f"{label}\n" for label in result.labels), encoding="utf-8")
    tmp = dataset_dir / (MANIFEST + ".tmp")
    # ensure_ascii: a name that is not UTF-8 is kept as a \udcXX escape, read back to the same bytes
    tmp.write_text(json.dumps(_manifest(result, src, settings), indent=1, ensure_ascii=True) + "\n", encoding="ascii")
    tmp.replace(dataset_dir / MANIFEST)
    log.info(
        "dataset %s: %d samples, %d rejected, %d duplicates/conflicts, %d unreadable",
        dataset_dir,
        len(result.samples),
        len(result.rejects),
        len(result.duplicates),
        len(result.unreadable),
    )


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Dataset:
    """A dataset manifest as the trainer reads it: labels and (path, label index, split) rows."""

    root: Path
    labels: tuple[str, ...]
    paths: tuple[Path, ...]
    targets: tuple[int, ...]
    splits: tuple[str, ...]
    manifest: dict[str, Any]

    @classmethod
    def load(cls, dataset_dir: str | Path) -> Dataset:
        root = Path(dataset_dir)
        path = root / MANIFEST
        if not root.exists():
            raise UsageError(f"{root}: no such dataset folder")
        if not path.is_file():
            raise UsageError(f"{path}: missing; create the dataset with 'edgesight data import SRC {root}'")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            labels = tuple(manifest["labels"])
            rows = manifest["samples"]
            paths = tuple((root / row["path"]).resolve() for row in rows)
            targets = tuple(labels.index(row["label"]) for row in rows)
            splits = tuple(row["split"] for row in rows)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{path}: not a valid dataset manifest ({type(exc).__name__}: {exc})") from None
        if not rows:
            raise UsageError(f"{path}: the dataset has no samples")
        return cls(root, labels, paths, targets, splits, manifest)

    def indices(self, split: str) -> list[int]:
        """Row numbers of one split; ``heldout`` is val + test (never trained on), ``all`` every row."""
        if split not in EVAL_SPLITS:
            raise UsageError(f"unknown split {split!r}; use {', '.join(EVAL_SPLITS)}")
        wanted = {"all": SPLITS, "heldout": ("val", "test")}.get(split, (split,))
        return [i for i, s in enumerate(self.splits) if s in wanted]

    def subset(self, split: str) -> tuple[list[Path], np.ndarray]:
        rows = self.indices(split)
        return [self.paths[i] for i in rows], np.array([self.targets[i] for i in rows], dtype=np.int64)
