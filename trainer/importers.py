"""Readers of the dataset layouts people already have, beyond a folder per class and Pascal VOC.

Each reader fills a :class:`layout.Discovery` (candidates, and the rejects known from the
annotations alone) and never touches a file of the user's: a row or task that names a photo
that is not there becomes a reject whose path does not exist, so nothing is moved for it.

- ``kaggle``: a CSV/TSV of ``id,label`` (column names detected or chosen) next to an images
  folder; the id-to-file rule is ``--filename`` (``{id}.png``, ``{label}/{id}.jpg``), or the id
  itself, or the id plus a usual image extension. An optional ``split`` column gives a split.
- ``coco``: a COCO JSON; one sample per image by its single category, or one per box with
  ``--crop-objects``. Several JSONs named ``*train*``/``*val*``/``*test*`` give a split.
- ``label-studio``: a Label Studio export (JSON or JSON-MIN) with one choice per image.
- ``yolo``: a YOLO-classification tree, ``train/ val/ test/`` each with class folders.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..device.core.errors import UsageError
from .images import ImageFault, load_photo
from .layout import Candidate, Discovery, Reject, Unreadable, label_text, os_reason, visible_files

log = logging.getLogger(__name__)

FORMATS = ("auto", "folders", "voc", "kaggle", "coco", "label-studio", "yolo")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
IMAGE_DIRS = ("images", "train", "train_images", "imgs", "img")
ID_COLUMNS = ("id", "image_id", "image", "filename", "file_name", "file", "image_name", "img", "path")
LABEL_COLUMNS = ("label", "class", "category", "target", "labels", "species", "breed", "diagnosis")
SPLIT_COLUMNS = ("split", "subset", "set")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
LS_META = frozenset({"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "data"})
LS_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


@dataclass
class FormatOptions:
    """How to read a CSV or JSON layout: where its photos are and which columns mean what."""

    images: Path | None = None  # the folder the file names are relative to
    id_col: str | None = None
    label_col: str | None = None
    filename: str = ""  # the id-to-file rule, e.g. "{id}.png"; "" = the id, or the id + an image extension


# --------------------------------------------------------------------------- detection


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _json_kind(path: Path) -> str | None:
    data = _json(path)
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        return "coco"
    if isinstance(data, list) and data and all(isinstance(t, dict) for t in data):
        return "label-studio"
    return None


def _split_dirs(src: Path) -> dict[str, Path]:
    """train/ val/ test/ (valid/, validation/ too) folders that hold class folders."""
    found: dict[str, Path] = {}
    for child in sorted(src.iterdir()) if src.is_dir() else ():
        split = SPLIT_NAMES.get(child.name.lower())
        if split and child.is_dir() and any(d.is_dir() and not d.name.startswith(".") for d in child.iterdir()):
            found.setdefault(split, child)
    return found if "train" in found and len(found) > 1 else {}


def _tables(src: Path) -> list[Path]:
    return sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".tsv"))


def _loose_images(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file())


def detect(src: Path, voc: bool) -> str:
    """The layout of ``src``: a format name of :data:`FORMATS` (never ``auto``)."""
    if src.is_file():
        if src.suffix.lower() in (".csv", ".tsv"):
            return "kaggle"
        if src.suffix.lower() == ".json":
            kind = _json_kind(src)
            if kind is None:
                raise UsageError(f"{src}: neither a COCO file (images + annotations) nor a Label Studio export")
            return kind
        raise UsageError(f"{src}: not a folder, CSV or JSON (use --format)")
    if voc:
        return "voc"
    if _split_dirs(src):
        return "yolo"
    if _coco_files(src):
        return "coco"
    if _tables(src) and any(_loose_images(src / d) for d in IMAGE_DIRS):
        return "kaggle"
    return "folders"


# --------------------------------------------------------------------------- Kaggle-style CSV


def _column(header: list[str], chosen: str | None, defaults: tuple[str, ...], option: str, path: Path) -> int | None:
    lowered = [h.strip().lower() for h in header]
    if chosen is not None:
        if chosen.strip().lower() not in lowered:
            raise UsageError(f"{path}: no column {chosen!r} ({option}); the columns are {', '.join(header)}")
        return lowered.index(chosen.strip().lower())
    return next((lowered.index(d) for d in defaults if d in lowered), None)


def _images_dir(anchor: Path, options: FormatOptions) -> Path:
    if options.images is not None:
        if not options.images.is_dir():
            raise UsageError(f"{options.images}: no such folder (--images)")
        return options.images
    return next((anchor / d for d in IMAGE_DIRS if _loose_images(anchor / d)), anchor)


def _file_for(images: Path, ident: str, label: str, rule: str) -> Path:
    if rule:
        try:
            return images / rule.format(id=ident, label=label)
        except (KeyError, IndexError, ValueError) as exc:
            raise UsageError(f"--filename {rule!r}: use {{id}} and {{label}}, e.g. {{id}}.jpg ({exc})") from None
    direct = images / ident
    if direct.suffix.lower() in IMAGE_SUFFIXES or direct.is_file():
        return direct
    return next((images / f"{ident}{s}" for s in IMAGE_SUFFIXES if (images / f"{ident}{s}").is_file()), direct)


def _cell(row: list[str], at: int | None) -> str:
    return row[at].strip() if at is not None and at < len(row) else ""


def _pick_table(src: Path) -> Path:
    if src.is_file():
        return src
    tables = _tables(src)
    named = [t for t in tables if t.stem.lower() in ("train", "labels", "train_labels", "trainlabels")]
    if len(tables) == 1 or len(named) == 1:
        return (named or tables)[0]
    raise UsageError(f"{src}: several CSV files ({', '.join(t.name for t in tables)}); give the one to read as SRC")


def read_kaggle(src: Path, options: FormatOptions, found: Discovery) -> None:
    table = _pick_table(src)
    images = _images_dir(table.parent, options)
    try:
        text = table.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{table}: not UTF-8 text (byte {exc.start})") from None
    rows = list(csv.reader(text.splitlines(), delimiter="\t" if table.suffix.lower() == ".tsv" else ","))
    if not rows:
        raise UsageError(f"{table}: empty")
    header = rows[0]
    id_at = _column(header, options.id_col, ID_COLUMNS, "--id-col", table)
    label_at = _column(header, options.label_col, LABEL_COLUMNS, "--label-col", table)
    if id_at is None or label_at is None:
        missing = "an id column (--id-col)" if id_at is None else "a label column (--label-col)"
        raise UsageError(f"{table}: no {missing}; the columns are {', '.join(header)}")
    split_at = _column(header, None, SPLIT_COLUMNS, "", table)
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        ident, label, given = (_cell(row, at) for at in (id_at, label_at, split_at))
        where = f"{table.name} row {number}"
        if not ident:
            found.rejects.append(Reject(Path(f"{table}:{number}"), label, f"{where}: no id"))
            continue
        path = _file_for(images, ident, label, options.filename)
        if not label:
            found.rejects.append(Reject(path, "", f"{where}: no label"))
        elif not path.is_file():
            found.rejects.append(Reject(path, label, f"{where}: no such file {path.relative_to(images)}"))
        else:
            found.candidates.append(Candidate(path, label, split=SPLIT_NAMES.get(given.lower(), "")))


# --------------------------------------------------------------------------- COCO


def _coco_files(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    jsons = [p for d in (src, src / "annotations") if d.is_dir() for p in sorted(d.glob("*.json"))]
    return [p for p in jsons if _json_kind(p) == "coco"]


def _split_of_name(path: Path) -> str:
    name = path.stem.lower()
    return next((SPLIT_NAMES[k] for k in ("train", "validation", "valid", "val", "test") if k in name), "")


def _coco_base(coco: Path, options: FormatOptions, names: list[str]) -> Path:
    if options.images is not None:
        return _images_dir(coco.parent, options)
    roots = [coco.parent / "images", coco.parent, coco.parent.parent / "images", coco.parent.parent]
    return max(roots, key=lambda r: sum((r / n).is_file() for n in names[:50]))


def read_coco(src: Path, options: FormatOptions, crop_objects: bool, crops_dir: Path, found: Discovery) -> None:
    files = _coco_files(src)
    if not files:
        raise UsageError(f"{src}: no COCO annotation file found")
    for coco in files:
        _read_one_coco(coco, options, crop_objects, crops_dir, found, _split_of_name(coco) if len(files) > 1 else "")


def _read_one_coco(
    coco: Path, options: FormatOptions, crop_objects: bool, crops_dir: Path, found: Discovery, split: str
) -> None:
    data = _json(coco)
    try:
        categories = {c["id"]: str(c["name"]) for c in data.get("categories", [])}
        images = {im["id"]: str(im["file_name"]) for im in data["images"]}
        notes = [(a["image_id"], a.get("category_id"), a.get("bbox")) for a in data["annotations"]]
    except (AttributeError, KeyError, TypeError) as exc:
        raise UsageError(f"{coco}: not a COCO file ({type(exc).__name__}: {exc} missing or malformed)") from None
    named = {image_id for image_id, _, _ in notes}
    if notes and images and not named & images.keys():
        example, image_example = sorted(named, key=str)[0], sorted(images, key=str)[0]
        raise UsageError(
            f"{coco}: no annotation's image_id matches an image id (annotations name e.g. {example!r}, "
            f"images have e.g. {image_example!r}); nothing imported"
        )
    stray = sorted(named - images.keys(), key=str)
    if stray:
        log.warning(
            "%s: %d annotation(s) name image ids not in 'images' (e.g. %r); ignored", coco, len(stray), stray[0]
        )
    objects: dict[Any, list[tuple[str, tuple[int, int, int, int]]]] = {}
    for image_id, category, bbox in notes:
        if image_id not in images:
            continue
        name = categories.get(category, "")
        try:
            x, y, w, h = (float(v) for v in bbox) if bbox else (0.0, 0.0, 0.0, 0.0)
        except (TypeError, ValueError):
            x = y = w = h = 0.0
        objects.setdefault(image_id, []).append((name, (int(x), int(y), int(x + w), int(y + h))))
    base = _coco_base(coco, options, list(images.values()))
    for image_id, file_name in images.items():
        path = base / file_name
        boxes = objects.get(image_id, [])
        names = sorted({n for n, _ in boxes if n})
        if not path.is_file():
            found.rejects.append(Reject(path, "", f"{coco.name}: image {image_id!r}: no such file {file_name}"))
        elif not names:
            found.rejects.append(
                Reject(path, "", f"{coco.name}: image {image_id!r} has no annotation with a known category")
            )
        elif crop_objects:
            cut_crops(path, coco, boxes, crops_dir, found, split)
        elif len(names) > 1:
            reason = f"{coco.name}: image {image_id!r} has several classes ({', '.join(names)}); use --crop-objects"
            found.rejects.append(Reject(path, "", reason))
        else:
            found.candidates.append(Candidate(path, names[0], split=split))


def cut_crops(image_path: Path, notes: Path, objects: list, crops_dir: Path, found: Discovery, split: str = "") -> None:
    """One candidate per bounding box (name, (x0, y0, x1, y1)), cut from the photo under ``crops/``."""
    try:
        frame, _ = load_photo(image_path)
    except ImageFault as exc:
        found.rejects.append(Reject(image_path, "", str(exc)))
        return
    except OSError as exc:
        found.unreadable.append(Unreadable(image_path, os_reason(exc)))
        return
    import cv2  # local: only the crop path needs the encoder

    for number, (name, (x0, y0, x1, y1)) in enumerate(objects):
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(frame.shape[1], x1), min(frame.shape[0], y1)
        if not name or x1 <= x0 or y1 <= y0:
            log.warning("%s: object %d of %s has an empty box; skipped", notes, number, image_path.name)
            continue
        crop_path = crops_dir / name / f"{image_path.stem}_{number}.png"
        crop_path.parent.mkdir(parents=True, exist_ok=True)
        ok, encoded = cv2.imencode(".png", frame[y0:y1, x0:x1])
        if ok:  # written by Python, not cv2.imwrite: the name may not be UTF-8
            crop_path.write_bytes(encoded.tobytes())
        found.candidates.append(Candidate(crop_path, name, origin=image_path, split=split))


# --------------------------------------------------------------------------- Label Studio


def _ls_choices(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and isinstance(value.get("choices"), list):
        return [str(c) for c in value["choices"]]
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return list(value)
    return []


def _ls_task(task: dict) -> tuple[str, list[str]]:
    """(image reference, choices) of one task, JSON or JSON-MIN."""
    if isinstance(task.get("data"), dict):
        data = task["data"]
        image = str(data.get("image") or data.get("img") or next((v for v in data.values() if isinstance(v, str)), ""))
        choices: list[str] = []
        for note in task.get("annotations") or task.get("completions") or []:
            if not isinstance(note, dict) or note.get("was_cancelled"):
                continue
            picked = [
                c for r in note.get("result", []) if r.get("type") == "choices" for c in _ls_choices(r.get("value"))
            ]
            choices = picked or choices
        return image, choices
    image = str(task.get("image") or task.get("img") or "")
    choices = [c for k, v in task.items() if k not in LS_META and k not in ("image", "img") for c in _ls_choices(v)]
    return image, choices


def _ls_file(reference: str, bases: list[Path]) -> Path:
    parts = urllib.parse.urlsplit(reference)
    query = urllib.parse.parse_qs(parts.query)
    relative = query["d"][0] if "d" in query else urllib.parse.unquote(parts.path).lstrip("/")
    name = Path(relative).name
    tries = [relative, name, LS_UPLOAD_PREFIX.sub("", name)]
    for base in bases:
        for candidate in tries:
            if candidate and (base / candidate).is_file():
                return base / candidate
    return bases[0] / name


def read_label_studio(src: Path, options: FormatOptions, found: Discovery) -> None:
    if src.is_dir():
        exports = [p for p in sorted(src.glob("*.json")) if _json_kind(p) == "label-studio"]
        if len(exports) != 1:
            raise UsageError(f"{src}: expected one Label Studio export (.json); give it as SRC")
        src = exports[0]
    tasks = _json(src)
    if not isinstance(tasks, list):
        raise UsageError(f"{src}: not a Label Studio export (expected a list of tasks)")
    bases = [options.images] if options.images is not None else [src.parent / "images", src.parent]
    for number, task in enumerate(tasks, start=1):
        if not isinstance(task, dict):
            continue
        ident = task.get("id", number)
        image, choices = _ls_task(task)
        if not image:
            found.rejects.append(Reject(Path(f"{src}:task {ident}"), "", f"{src.name} task {ident}: no image"))
            continue
        path = _ls_file(image, bases)
        labels = sorted(set(choices))
        if not path.is_file():
            reason = f"{src.name} task {ident}: no such file {Path(image).name} (give the photo folder with --images)"
            found.rejects.append(Reject(path, labels[0] if len(labels) == 1 else "", reason))
        elif not labels:
            found.rejects.append(Reject(path, "", f"{src.name} task {ident}: no choice made"))
        elif len(labels) > 1:
            found.rejects.append(Reject(path, "", f"{src.name} task {ident}: several choices ({', '.join(labels)})"))
        else:
            found.candidates.append(Candidate(path, labels[0]))


# --------------------------------------------------------------------------- YOLO classification


def read_yolo(src: Path, found: Discovery) -> None:
    splits = _split_dirs(src)
    if not splits:
        raise UsageError(f"{src}: not a YOLO-classification tree (train/ and val/ or test/, each with class folders)")
    for split, folder in splits.items():
        for class_dir in sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")):
            label = label_text(class_dir.name)
            found.candidates.extend(
                Candidate(p, label, split=split) for p in visible_files(class_dir, found.unreadable)
            )
        loose = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        if loose:
            log.warning("%s: ignoring %d file(s) outside class folders (e.g. %s)", folder, len(loose), loose[0].name)
