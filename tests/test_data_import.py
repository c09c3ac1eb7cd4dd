"""`edgesight data import/report` on real bad files: rejects moved aside, duplicates and conflicts
reported, nothing deleted, a stratified split that a seed reproduces. No TensorFlow needed."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import pytest
from conftest import assert_one_line_error
from trainer_images import photo, write_animated_gif, write_ico, write_jpeg, write_truncated_jpeg

from edgesight.trainer.dataset import Dataset, import_dataset


def _digests(*roots: Path) -> Counter:
    return Counter(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for root in roots
        if root.exists()
        for p in root.rglob("*")
        if p.is_file()
    )


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """Two classes of distinct photos plus one of every kind of bad file."""
    src = tmp_path / "photos"
    for c, label in enumerate(("apple", "pear")):
        for i in range(10):
            write_jpeg(src / label / f"{label}_{i}.jpg", photo(c * 100 + i))
    write_truncated_jpeg(src / "apple" / "truncated.jpg", photo(500))
    write_animated_gif(src / "apple" / "animated.gif")
    write_ico(src / "pear" / "favicon.ico")
    (src / "pear" / "notes.png").write_text("this is not a picture\n")
    write_jpeg(src / "pear" / "tiny.jpg", cv2.resize(photo(501), (12, 12)))
    shutil.copyfile(src / "apple" / "apple_0.jpg", src / "apple" / "apple_0_copy.jpg")  # exact duplicate
    near = cv2.resize(photo(1), (110, 110), interpolation=cv2.INTER_AREA)  # re-encoded, resized apple_1
    write_jpeg(src / "apple" / "apple_1_small.jpg", near, quality=60)
    shutil.copyfile(src / "pear" / "pear_5.jpg", src / "apple" / "also_pear_5.jpg")  # label conflict
    return src


def test_bad_files_rejected_duplicates_reported_nothing_deleted(messy: Path, tmp_path: Path, cli) -> None:
    before = _digests(messy)
    out = tmp_path / "ds"
    result = cli("data", "import", messy, out, "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert "rejected 5 file(s)" in result.stdout

    # every original byte sequence still exists, in the source or moved under the dataset folder
    after = _digests(messy, out / "rejects")
    assert all(after[d] >= n for d, n in before.items())

    with (out / "rejects.csv").open() as handle:
        rejects = {Path(row["original"]).name: row for row in csv.DictReader(handle)}
    expected = {
        "truncated.jpg": "truncated",
        "animated.gif": "animated GIF",
        "favicon.ico": "ICO",
        "notes.png": "not an image",
        "tiny.jpg": "too small",
    }
    assert set(rejects) == set(expected)
    for name, fragment in expected.items():
        assert fragment in rejects[name]["reason"], rejects[name]
        moved = Path(rejects[name]["moved_to"])
        assert moved.is_file() and moved.is_relative_to(out / "rejects")
        assert not Path(rejects[name]["original"]).exists()

    with (out / "duplicates.csv").open() as handle:
        dups = {Path(row["path"]).name: row for row in csv.DictReader(handle)}
    assert dups["apple_0_copy.jpg"]["kind"] == "exact"
    assert Path(dups["apple_0_copy.jpg"]["kept"]).name == "apple_0.jpg"
    assert dups["apple_1_small.jpg"]["kind"] == "near"
    assert int(dups["apple_1_small.jpg"]["phash_distance"]) <= 4
    assert dups["also_pear_5.jpg"]["kind"] == dups["pear_5.jpg"]["kind"] == "conflict"
    assert (messy / "apple" / "apple_0_copy.jpg").exists()  # duplicates are reported, not moved

    dataset = Dataset.load(out)
    names = {p.name for p in dataset.paths}
    assert not names & {"apple_0_copy.jpg", "apple_1_small.jpg", "also_pear_5.jpg", "pear_5.jpg"}
    assert len(names) == 19  # 10 apples + 9 pears
    assert (out / "labels.txt").read_text() == "apple\npear\n"

    report = cli("data", "report", out)
    assert report.returncode == 0, report.stderr
    assert "label conflicts: 2" in report.stdout and "1 exact, 1 near" in report.stdout
    assert "rejected: 5" in report.stdout and "imbalance ratio" in report.stdout


def test_split_is_stratified_and_seeded(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for c, label in enumerate(("a", "b", "c")):
        for i in range(20 + 10 * c):
            write_jpeg(src / label / f"{i}.jpg", photo(1000 * (c + 1) + i, 64))
    first = import_dataset(src, tmp_path / "one", seed=7)
    again = import_dataset(src, tmp_path / "two", seed=7)
    other = import_dataset(src, tmp_path / "three", seed=8, split=(0.6, 0.2, 0.2))
    split_of = lambda r: {s.path.name + s.label: s.split for s in r.samples}  # noqa: E731
    assert split_of(first) == split_of(again)
    assert split_of(first) != split_of(other)
    counts = Counter((s.label, s.split) for s in first.samples)
    for label, n in (("a", 20), ("b", 30), ("c", 40)):
        assert counts[(label, "test")] == round(n * 0.1) and counts[(label, "val")] == round(n * 0.1)
        assert counts[(label, "train")] == n - 2 * round(n * 0.1)
    counts = Counter((s.label, s.split) for s in other.samples)
    assert counts[("c", "test")] == 8 and counts[("c", "train")] == 24
    manifest = json.loads((tmp_path / "one" / "dataset.json").read_text())
    assert manifest["seed"] == 7 and len(manifest["samples"]) == 90


def _voc_xml(filename: str, objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    body = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
        f"<ymax>{y1}</ymax></bndbox></object>"
        for name, (x0, y0, x1, y1) in objects
    )
    return f"<annotation><filename>{filename}</filename>{body}</annotation>"


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    src = tmp_path / "voc"
    (src / "Annotations").mkdir(parents=True)
    for i in range(6):
        label = "cat" if i % 2 else "dog"
        write_jpeg(src / "Images" / f"img{i}.jpg", photo(300 + i, 160))
        (src / "Annotations" / f"img{i}.xml").write_text(_voc_xml(f"img{i}.jpg", [(label, (10, 10, 120, 140))]))
    write_jpeg(src / "Images" / "both.jpg", photo(320, 160))
    (src / "Annotations" / "both.xml").write_text(
        _voc_xml("both.jpg", [("cat", (0, 0, 80, 80)), ("dog", (80, 80, 160, 160))])
    )
    write_jpeg(src / "Images" / "unlabelled.jpg", photo(321, 160))
    (src / "labels.txt").write_text("dog\ncat\n")
    return src


def test_pascal_voc_layout_whole_images(voc: Path, tmp_path: Path) -> None:
    result = import_dataset(voc, tmp_path / "ds", move_rejects=False)
    assert result.labels == ["dog", "cat"]  # labels.txt order, not alphabetical
    assert Counter(s.label for s in result.samples) == {"dog": 3, "cat": 3}
    reasons = {r.path.name: r.reason for r in result.rejects}
    assert "several classes" in reasons["both.jpg"] and "no annotation" in reasons["unlabelled.jpg"]
    assert (voc / "Images" / "both.jpg").exists()  # --no-move lists rejects without moving them


def test_pascal_voc_crop_objects(voc: Path, tmp_path: Path, cli) -> None:
    result = cli("data", "import", voc, tmp_path / "ds", "--crop-objects")
    assert result.returncode == 0, result.stderr
    dataset = Dataset.load(tmp_path / "ds")
    assert Counter(dataset.labels[t] for t in dataset.targets) == {"dog": 4, "cat": 4}
    crops = [p for p in dataset.paths if p.name.startswith("both_")]
    assert len(crops) == 2 and all(cv2.imread(str(p)).shape[:2] == (80, 80) for p in crops)
    assert (voc / "Images" / "both.jpg").exists()  # the photo itself stays; crops are new files
    rejected = (tmp_path / "ds" / "rejects.csv").read_text()
    assert "unlabelled.jpg" in rejected and (tmp_path / "ds" / "rejects" / "Images" / "unlabelled.jpg").exists()


def test_missing_and_empty_sources_are_one_line_errors(tmp_path: Path, cli) -> None:
    assert_one_line_error(
        cli("data", "import", tmp_path / "nowhere", tmp_path / "ds"), "nowhere", "no such dataset folder", code=2
    )
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    assert_one_line_error(cli("data", "import", tmp_path / "empty", tmp_path / "ds"), "no images found", code=2)
    (tmp_path / "junk" / "cls").mkdir(parents=True)
    (tmp_path / "junk" / "cls" / "a.jpg").write_text("not a jpeg")
    result = cli("data", "import", tmp_path / "junk", tmp_path / "ds2")
    assert_one_line_error(result, "no usable images", code=1)
    assert (tmp_path / "ds2" / "rejects" / "cls" / "a.jpg").read_text() == "not a jpeg"
    assert "not an image file" in (tmp_path / "ds2" / "rejects.csv").read_text()
    assert_one_line_error(cli("data", "report", tmp_path / "nothing"), "no such dataset folder", code=2)
