"""Import a folder of labelled photos into a checked, de-duplicated, split dataset manifest.

The dataset directory holds ``dataset.json`` (every usable sample with its label and split),
``labels.txt``, ``rejects/`` + ``rejects.csv`` (files that cannot be trained on, moved aside,
never deleted) and ``duplicates.csv`` (exact/near duplicates and label conflicts, which stay
where they are but are left out of the split). Images are referenced, not copied, so a large
photo folder is not duplicated on disk. The device's own decoder (``read_image``) is the judge
of what is readable, so anything that passes here also decodes on the device.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..device.core.errors import EdgesightError, ImageError, UsageError
from ..device.core.preprocess import read_image, to_rgb

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
SIDECAR_SUFFIXES = frozenset({".json"})  # `edgesight run` [capture] writes one beside each JPEG
VOC_IMAGE_DIRS = ("Images", "JPEGImages", "images")
VOC_ANNOTATION_DIRS = ("Annotations", "annotations")


@dataclass
class Candidate:
    """One file (or one object crop) found in the source, before checks."""

    path: Path
    label: str
    origin: Path | None = None  # the source photo a crop was cut from


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
class Reject:
    path: Path
    label: str
    reason: str
    moved_to: Path | None = None


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


# --------------------------------------------------------------------------- discovery


def _visible_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


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
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        try:
            coords = tuple(int(float(box.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr]
        except (AttributeError, TypeError, ValueError):
            coords = (0, 0, 0, 0)
        objects.append((name, coords))
    return objects


def discover(
    src: Path, dataset_dir: Path, crop_objects: bool
) -> tuple[list[Candidate], list[Reject], list[str] | None]:
    """List candidate samples from a folder-per-class or a Pascal VOC layout.

    Returns the candidates, the files already known to be unusable (no annotation, several
    classes in one photo) and the label order from the source's ``labels.txt`` if it has one.
    """
    if not src.exists():
        raise UsageError(f"{src}: no such dataset folder")
    if not src.is_dir():
        raise UsageError(f"{src}: not a folder (expected one sub-folder per class, or Images/ + Annotations/)")
    order = _read_label_order(src)
    voc = _find_voc(src)
    candidates: list[Candidate] = []
    rejects: list[Reject] = []
    if voc is None:
        if crop_objects:
            raise UsageError(f"{src}: --crop-objects needs the Pascal VOC layout (Images/ + Annotations/)")
        class_dirs = [
            d
            for d in sorted(src.iterdir())
            if d.is_dir() and not d.name.startswith(".") and d.resolve() != dataset_dir.resolve()
        ]
        for class_dir in class_dirs:
            # JSON sidecars (the device's retraining captures) are metadata, not samples: skip, not reject
            candidates.extend(
                Candidate(path, class_dir.name)
                for path in _visible_files(class_dir)
                if path.suffix.lower() not in SIDECAR_SUFFIXES
            )
        loose = [p.name for p in src.iterdir() if p.is_file() and p.name != LABELS and not p.name.startswith(".")]
        if loose:
            log.warning("%s: ignoring %d file(s) outside class folders (e.g. %s)", src, len(loose), loose[0])
        return candidates, rejects, order
    images_dir, notes_dir = voc
    crops_dir = dataset_dir / CROPS_DIR
    for image_path in _visible_files(images_dir):
        xml_path = notes_dir / image_path.relative_to(images_dir).with_suffix(".xml")
        if not xml_path.is_file():
            rejects.append(Reject(image_path, "", f"no annotation {xml_path.name}"))
            continue
        try:
            objects = _voc_objects(xml_path)
        except ImageError as exc:
            rejects.append(Reject(image_path, "", str(exc)))
            continue
        names = sorted({name for name, _ in objects if name})
        if not names:
            rejects.append(Reject(image_path, "", f"{xml_path.name} names no object"))
        elif not crop_objects:
            if len(names) > 1:
                rejects.append(
                    Reject(
                        image_path, "", f"{xml_path.name} has several classes ({', '.join(names)}); use --crop-objects"
                    )
                )
            else:
                candidates.append(Candidate(image_path, names[0]))
        else:
            try:
                frame = read_image(image_path)
            except ImageError as exc:
                rejects.append(Reject(image_path, "", str(exc).split(": ", 1)[-1]))
                continue
            for number, (name, (x0, y0, x1, y1)) in enumerate(objects):
                x0, y0 = max(0, x0), max(0, y0)
                x1, y1 = min(frame.shape[1], x1), min(frame.shape[0], y1)
                if not name or x1 <= x0 or y1 <= y0:
                    log.warning("%s: object %d has an empty box; skipped", xml_path, number)
                    continue
                crop_path = crops_dir / name / f"{image_path.stem}_{number}.png"
                crop_path.parent.mkdir(parents=True, exist_ok=True)
                import cv2  # local: only the crop path needs the encoder

                cv2.imwrite(str(crop_path), frame[y0:y1, x0:x1])
                candidates.append(Candidate(crop_path, name, origin=image_path))
    return candidates, rejects, order


# --------------------------------------------------------------------------- checks


def _sniff(path: Path) -> str | None:
    """A reason to refuse the file by its container format, or None to go on and decode it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            fmt = image.format or ""
            frames = getattr(image, "n_frames", 1)
    except UnidentifiedImageError:
        return "not an image file"
    except (OSError, ValueError, SyntaxError) as exc:
        return f"unreadable image ({exc})"
    if fmt == "GIF" and frames > 1:
        return f"animated GIF ({frames} frames)"
    if fmt == "ICO":
        return "ICO icon file"
    return None


def _phash(rgb: np.ndarray) -> int:
    import imagehash
    from PIL import Image

    return int(str(imagehash.phash(Image.fromarray(rgb))), 16)


def check_file(candidate: Candidate, min_size: int) -> Sample | Reject:
    """Decide whether one file can be trained on; a Reject says why not."""
    path = candidate.path
    reason = _sniff(path)
    if reason is None:
        try:
            frame = read_image(path)
        except ImageError as exc:
            reason = str(exc).split(": ", 1)[-1]
        else:
            height, width = frame.shape[:2]
            if min(height, width) < min_size:
                reason = f"too small ({width}x{height}; the floor is {min_size} px a side)"
    if reason is not None:
        return Reject(path, candidate.label, reason)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Sample(path, candidate.label, width, height, digest, _phash(to_rgb(frame)), candidate.origin)


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


def parse_split(text: str) -> tuple[float, float, float]:
    """``80/10/10`` or ``0.8,0.1,0.1`` -> fractions of train/val/test that sum to 1."""
    parts = text.replace(",", "/").split("/")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise UsageError(f"--split {text!r}: expected three numbers like 80/10/10") from None
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0 or values[0] <= 0:
        raise UsageError(f"--split {text!r}: expected three non-negative numbers (train > 0) like 80/10/10")
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


def _move_aside(reject: Reject, dataset_dir: Path, src: Path) -> None:
    """Move a rejected file under ``rejects/`` keeping its relative path; never overwrite."""
    path = reject.path
    if dataset_dir.resolve() in path.resolve().parents:  # our own crop: nothing of the user's to move
        return
    try:
        relative = path.resolve().relative_to(src.resolve())
    except ValueError:
        relative = Path(path.name)
    target = dataset_dir / REJECTS_DIR / relative
    stem, suffix, number = target.stem, target.suffix, 1
    while target.exists():
        target = target.with_name(f"{stem}.{number}{suffix}")
        number += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), str(target))
    reject.moved_to = target


def _rel(path: Path | None, base: Path) -> str | None:
    return None if path is None else os.path.relpath(path.resolve(), base.resolve())


def _append_csv(path: Path, header: list[str], rows: Iterable[list[Any]]) -> None:
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(header)
        writer.writerows(rows)


def import_dataset(
    src: str | Path,
    dataset_dir: str | Path,
    *,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    min_size: int = 32,
    near_distance: int = 4,
    crop_objects: bool = False,
    move_rejects: bool = True,
    workers: int | None = None,
) -> ImportResult:
    """Check, de-duplicate and split ``src`` into the dataset directory ``dataset_dir``.

    Args:
        src: a folder per class, or ``Images/`` + ``Annotations/`` (Pascal VOC) [+ ``labels.txt``].
        dataset_dir: where the manifest, labels, rejects and reports are written.
        split: train/val/test fractions.
        seed: makes the split reproducible.
        min_size: images with a side shorter than this are rejected.
        near_distance: perceptual-hash Hamming distance at or below which two images are near
            duplicates (-1 turns near-duplicate search off).
        crop_objects: VOC only: one sample per bounding box instead of one per photo.
        move_rejects: move rejected files aside (the default) or only list them.
    Returns:
        What was kept, rejected and reported.
    """
    from tqdm import tqdm

    src, dataset_dir = Path(src), Path(dataset_dir)
    if dataset_dir.exists() and not dataset_dir.is_dir():
        raise UsageError(f"{dataset_dir}: exists and is not a folder")
    dataset_dir.mkdir(parents=True, exist_ok=True)
    candidates, rejects, order = discover(src, dataset_dir, crop_objects)
    if not candidates and not rejects:
        raise UsageError(f"{src}: no images found (expected one sub-folder per class, or Images/ + Annotations/)")
    if order is not None:
        unknown = sorted({c.label for c in candidates} - set(order))
        for candidate in [c for c in candidates if c.label in unknown]:
            rejects.append(Reject(candidate.path, candidate.label, f"class {candidate.label!r} is not in labels.txt"))
        candidates = [c for c in candidates if c.label not in unknown]
    samples: list[Sample] = []
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 2))) as pool:
        checked = pool.map(lambda c: check_file(c, min_size), candidates)
        for result in tqdm(checked, total=len(candidates), desc="checking", unit="img", leave=False, disable=None):
            (samples if isinstance(result, Sample) else rejects).append(result)
    samples, duplicates = find_duplicates(samples, near_distance)
    if move_rejects:
        for reject in rejects:
            if reject.path.exists():
                _move_aside(reject, dataset_dir, src)
    if not samples:
        _write_rejects(dataset_dir, rejects)
        raise EdgesightError(
            f"{src}: no usable images ({len(rejects)} rejected; reasons in {dataset_dir / REJECTS_CSV})"
        )
    labels = order or sorted({s.label for s in samples})
    assign_splits(samples, split, seed)
    _write_rejects(dataset_dir, rejects)
    _write(dataset_dir, src, labels, samples, rejects, duplicates, split, seed, min_size, near_distance)
    return ImportResult(dataset_dir, labels, samples, rejects, duplicates)


def _write_rejects(dataset_dir: Path, rejects: list[Reject]) -> None:
    """Append this import's rejects to ``rejects.csv`` (earlier imports' rows are kept)."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _append_csv(
        dataset_dir / REJECTS_CSV,
        ["time", "original", "moved_to", "label", "reason"],
        ([now, str(r.path), str(r.moved_to or ""), r.label, r.reason] for r in rejects),
    )


def _write(
    dataset_dir: Path,
    src: Path,
    labels: list[str],
    samples: list[Sample],
    rejects: list[Reject],
    duplicates: list[Duplicate],
    split: tuple[float, float, float],
    seed: int,
    min_size: int,
    near_distance: int,
) -> None:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with (dataset_dir / DUPLICATES_CSV).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["kind", "path", "label", "kept", "phash_distance", "labels"])
        writer.writerows(
            [d.kind, str(d.path), d.label, str(d.kept or ""), d.distance, " ".join(d.labels)] for d in duplicates
        )
    (dataset_dir / LABELS).write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created": now,
        "source": str(src.resolve()),
        "seed": seed,
        "split": dict(zip(SPLITS, split)),
        "min_size": min_size,
        "near_distance": near_distance,
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
            for s in sorted(samples, key=lambda s: (labels.index(s.label), str(s.path)))
        ],
        "duplicates": [
            {**asdict(d), "path": str(d.path), "kept": str(d.kept) if d.kept else None, "labels": list(d.labels)}
            for d in duplicates
        ],
        "rejects": [
            {
                "path": str(r.path),
                "moved_to": str(r.moved_to) if r.moved_to else None,
                "label": r.label,
                "reason": r.reason,
            }
            for r in rejects
        ],
    }
    tmp = dataset_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    tmp.replace(dataset_dir / MANIFEST)
    log.info(
        "dataset %s: %d samples, %d rejected, %d duplicates/conflicts",
        dataset_dir,
        len(samples),
        len(rejects),
        len(duplicates),
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
