"""`data import` of the layouts people bring from other tools, built from small real files:
Kaggle CSV + images, COCO JSON (per image and per box), Label Studio JSON/JSON-MIN, a YOLO tree
whose split is kept; and the split spellings 9:1 / 90/10. Malformed sources give one line and
delete nothing of the user's."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import assert_one_line_error
from trainer_images import photo, write_jpeg

from edgesight.device.core.errors import UsageError
from edgesight.trainer.dataset import import_dataset, parse_split


def _digests(root: Path) -> Counter:
    return Counter(hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file())


def _manifest(ds: Path) -> dict:
    return json.loads((ds / "dataset.json").read_text())


def _photos(folder: Path, names: list[str], seed: int = 0) -> None:
    for i, name in enumerate(names):
        write_jpeg(folder / name, photo(seed + i))


def test_kaggle_csv_with_images_folder_and_a_row_naming_a_missing_file(tmp_path: Path, cli) -> None:
    src = tmp_path / "kaggle"
    _photos(src / "images", [f"{i}.png" for i in range(8)])  # PNG names, JPEG bytes: judged by content
    rows = [f"{i},{'cat' if i % 2 else 'dog'}" for i in range(8)] + ["99,cat"]
    (src / "train.csv").write_text("id,label\n" + "\n".join(rows) + "\n")
    before = _digests(src)
    ds = tmp_path / "ds"
    result = cli("data", "import", src, ds, "--filename", "{id}.png")
    assert result.returncode == 0, result.stderr
    manifest = _manifest(ds)
    assert manifest["format"] == "kaggle" and manifest["labels"] == ["cat", "dog"]
    assert len(manifest["samples"]) == 8
    (reject,) = manifest["rejects"]
    assert reject["reason"] == "train.csv row 10: no such file 99.png" and reject["moved_to"] is None
    assert _digests(src) == before  # nothing of the user's moved or deleted

    # the id without an extension is found by trying the usual ones; columns can be named
    other = tmp_path / "other"
    _photos(other / "train_images", ["a.jpg", "b.jpg", "c.jpg"], seed=20)
    (other / "labels.csv").write_text("image_name,species\na,owl\nb,owl\nc,hawk\n")
    imported = import_dataset(other / "labels.csv", tmp_path / "ds2")
    assert sorted(s.label for s in imported.samples) == ["hawk", "owl", "owl"]

    assert_one_line_error(
        cli("data", "import", src, tmp_path / "d3", "--label-col", "kind"), "no column 'kind'", code=2
    )


def test_coco_per_image_per_box_and_ids_that_do_not_match(tmp_path: Path, cli) -> None:
    src = tmp_path / "coco"
    _photos(src / "images", [f"p{i}.jpg" for i in range(6)], seed=40)
    images = [{"id": i + 1, "file_name": f"p{i}.jpg", "width": 128, "height": 128} for i in range(6)]
    images.append({"id": 7, "file_name": "gone.jpg"})
    notes = [{"id": i, "image_id": i, "category_id": 1 if i <= 3 else 2, "bbox": [10, 10, 60, 50]} for i in range(1, 6)]
    notes.append({"id": 9, "image_id": 5, "category_id": 1, "bbox": [70, 70, 40, 40]})  # p4: two classes
    coco = {
        "images": images,
        "annotations": notes,
        "categories": [{"id": 1, "name": "bird"}, {"id": 2, "name": "fish"}],
    }
    (src / "instances.json").write_text(json.dumps(coco))
    before = _digests(src / "images")

    ds = tmp_path / "ds"
    result = cli("data", "import", src / "instances.json", ds, "--no-move")
    assert result.returncode == 0, result.stderr
    manifest = _manifest(ds)
    assert manifest["format"] == "coco"
    assert Counter(s["label"] for s in manifest["samples"]) == {"bird": 3, "fish": 1}
    reasons = {Path(r["path"]).name: r["reason"] for r in manifest["rejects"]}
    assert "several classes (bird, fish)" in reasons["p4.jpg"]
    assert "no annotation" in reasons["p5.jpg"]
    assert "no such file gone.jpg" in reasons["gone.jpg"]

    crops = import_dataset(src, tmp_path / "crops", crop_objects=True, move_rejects=False, near_distance=-1)
    assert Counter(s.label for s in crops.samples) == {"bird": 4, "fish": 2}
    assert all(s.origin is not None for s in crops.samples)

    broken = tmp_path / "broken"
    _photos(broken / "images", ["a.jpg", "b.jpg"], seed=60)
    (broken / "instances.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
                "annotations": [{"image_id": 11, "category_id": 1, "bbox": [0, 0, 5, 5]}],
                "categories": [{"id": 1, "name": "bird"}],
            }
        )
    )
    kept = _digests(broken)
    failed = cli("data", "import", broken, tmp_path / "ds3")
    assert_one_line_error(failed, "no annotation's image_id matches an image id", code=2)
    assert _digests(broken) == kept
    (broken / "bad.json").write_text("{not json")
    assert_one_line_error(cli("data", "import", broken / "bad.json", tmp_path / "ds4"), "not valid JSON", code=2)
    assert _digests(src / "images") == before


def test_label_studio_json_and_json_min(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    _photos(photos, ["1a2b3c4d-red.jpg", "blue.jpg", "green.jpg", "none.jpg"], seed=80)
    tasks = [
        {
            "id": 1,
            "data": {"image": "/data/upload/3/1a2b3c4d-red.jpg"},
            "annotations": [{"result": [{"type": "choices", "value": {"choices": ["warm"]}}]}],
        },
        {
            "id": 2,
            "data": {"image": "/data/local-files/?d=blue.jpg"},
            "annotations": [{"result": [{"type": "choices", "value": {"choices": ["cold"]}}]}],
        },
        {"id": 3, "data": {"image": "/data/upload/3/green.jpg"}, "annotations": [{"result": []}]},
        {"id": 4, "data": {"image": "/data/upload/3/missing.jpg"}, "annotations": []},
    ]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    result = import_dataset(export, tmp_path / "ds", layout=_images(photos), move_rejects=False)
    assert result.format == "label-studio"
    assert sorted((s.path.name, s.label) for s in result.samples) == [
        ("1a2b3c4d-red.jpg", "warm"),
        ("blue.jpg", "cold"),
    ]
    reasons = sorted(r.reason for r in result.rejects)
    assert reasons == [
        "export.json task 3: no choice made",
        "export.json task 4: no such file missing.jpg (give the photo folder with --images)",
    ]

    minimal = tmp_path / "min.json"
    rows = [
        {"id": 1, "image": "/data/upload/3/1a2b3c4d-red.jpg", "choice": "warm"},
        {"id": 2, "image": "/data/upload/3/blue.jpg", "choice": "cold"},
        {"id": 3, "image": "/data/upload/3/green.jpg", "choice": {"choices": ["cold", "warm"]}},
        {"id": 4, "image": "/data/upload/3/none.jpg", "choice": "cold"},
    ]
    minimal.write_text(json.dumps(rows))
    small = import_dataset(minimal, tmp_path / "ds2", layout=_images(photos), move_rejects=False)
    assert sorted(s.label for s in small.samples) == ["cold", "cold", "warm"]
    (reject,) = small.rejects
    assert "several choices (cold, warm)" in reject.reason


def _images(folder: Path):
    from edgesight.trainer.importers import FormatOptions

    return FormatOptions(images=folder)


def test_yolo_tree_keeps_its_split(tmp_path: Path, cli) -> None:
    src = tmp_path / "yolo"
    seed = 100
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        for label in ("ant", "bee"):
            _photos(src / split / label, [f"{split}_{i}.jpg" for i in range(n)], seed=seed)
            seed += 10
    ds = tmp_path / "ds"
    result = cli("data", "import", src, ds, "--keep-split")
    assert result.returncode == 0, result.stderr
    manifest = _manifest(ds)
    assert manifest["format"] == "yolo" and manifest["kept_split"] is True
    assert all(Path(s["path"]).parts[-3] == s["split"] for s in manifest["samples"])
    assert Counter(s["split"] for s in manifest["samples"]) == {"train": 12, "val": 4, "test": 4}

    drawn = cli("data", "import", src, tmp_path / "drawn")
    assert "the source comes split; this split was drawn anew" in drawn.stdout
    assert_one_line_error(
        cli("data", "import", src / "train", tmp_path / "x", "--keep-split"), "--keep-split needs", code=2
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("80/10/10", (0.8, 0.1, 0.1)), ("8:1:1", (0.8, 0.1, 0.1)), ("9:1", (0.8, 0.1, 0.1)), ("90/10", (0.8, 0.1, 0.1)),
     ("0.7,0.3", (0.7 * 8 / 9, 0.7 / 9, 0.3))],
)  # fmt: skip
def test_split_spellings(text: str, expected: tuple[float, float, float]) -> None:
    assert parse_split(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["90", "a:b", "0/10", "1/2/3/4", "-1/2"])
def test_bad_split_spellings(text: str) -> None:
    with pytest.raises(UsageError, match="--split"):
        parse_split(text)
