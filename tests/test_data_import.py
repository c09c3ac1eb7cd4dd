"""`edgesight data import/report` on real bad files: rejects moved aside, duplicates and conflicts
reported, nothing deleted, a stratified split that a seed reproduces. No TensorFlow needed."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import pytest
from conftest import assert_one_line_error
from trainer_images import (
    encode_jpeg,
    photo,
    write_animated_gif,
    write_bytes_path,
    write_ico,
    write_jpeg,
    write_jpeg_with_trailer,
    write_png_claiming,
    write_truncated_jpeg,
)

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


def _csv_rows(path: Path) -> list[dict[str, str]]:
    # names that are not UTF-8 are written with their original bytes (surrogateescape)
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        return list(csv.DictReader(handle))


def test_non_utf8_file_and_class_names_are_recorded_before_any_move(tmp_path: Path, cli) -> None:
    src = tmp_path / "photos"
    raw = os.fsencode(src)
    for i in range(6):
        write_jpeg(src / "apple" / f"apple_{i}.jpg", photo(700 + i))
        write_bytes_path(raw + b"/p\xe9ar/pear_%d.jpg" % i, encode_jpeg(photo(800 + i)))
    write_bytes_path(raw + b"/apple/caf\xe9.jpg", encode_jpeg(photo(900)))  # a good photo, odd name
    for name in (b"bad\xff1.jpg", b"bad\xfe2.jpg", b"bad\xfd3.jpg"):
        write_bytes_path(raw + b"/apple/" + name, b"not a picture")
    write_bytes_path(raw + b"/p\xe9ar/broken.jpg", b"also not a picture")
    out = tmp_path / "ds"

    result = cli("data", "import", src, out)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert "rejected 4 file(s)" in result.stdout
    moved = [p for p in (out / "rejects").rglob("*") if p.is_file()]
    rows = _csv_rows(out / "rejects.csv")
    assert len(moved) == len(rows) == 4  # every moved file has its row
    assert {Path(r["moved_to"]) for r in rows} == set(moved)
    assert {os.fsencode(Path(r["original"]).name) for r in rows} == {
        b"bad\xff1.jpg",
        b"bad\xfe2.jpg",
        b"bad\xfd3.jpg",
        b"broken.jpg",
    }
    labels = (out / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert labels == ["apple", "p\\xe9ar"]  # a class name that is not UTF-8 is shown with its byte escaped
    dataset = Dataset.load(out)
    assert len(dataset.paths) == 13 and all(p.is_file() for p in dataset.paths)
    assert b"caf\xe9.jpg" in {os.fsencode(p.name) for p in dataset.paths}
    assert "p\\xe9ar" in result.stdout  # the summary table names the class without crashing stdout


def test_jpeg_with_bytes_after_its_end_marker_is_a_sample(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for c, label in enumerate(("a", "b")):
        for i in range(5):
            write_jpeg(src / label / f"{i}.jpg", photo(1100 + 10 * c + i))
    trailer = write_jpeg_with_trailer(src / "a" / "phone.jpg", photo(1200))
    write_truncated_jpeg(src / "b" / "cut.jpg", photo(1201))
    result = import_dataset(src, tmp_path / "ds")
    assert {r.path.name: r.reason for r in result.rejects}.keys() == {"cut.jpg"}
    assert "truncated" in result.rejects[0].reason
    assert trailer.is_file() and "phone.jpg" in {s.path.name for s in result.samples}


_AS_NOBODY = r"""
import contextlib, io, os, sys
from edgesight.device.cli import main
warm, argv = sys.argv[1], sys.argv[2:]
if os.geteuid() == 0:
    # import every lazily loaded module as root first: the interpreter lives under /root (0700)
    with contextlib.redirect_stdout(io.StringIO()):  # its stderr is empty: a clean tree
        main(["data", "import", os.path.join(warm, "src"), os.path.join(warm, "ds")])
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
sys.exit(main(argv))
"""


def test_unreadable_files_and_folders_are_reported_and_left_in_place(tmp_path: Path) -> None:
    for label in ("x", "y"):
        for i in range(3):
            write_jpeg(tmp_path / "warm" / "src" / label / f"{i}.jpg", photo(1300 + i + (10 if label == "y" else 0)))
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="edgesight-perm-"))  # pytest's tmp is 0700 root's
    try:
        src = base / "src"
        for c, label in enumerate(("apple", "pear")):
            for i in range(5):
                write_jpeg(src / label / f"{label}_{i}.jpg", photo(1400 + 10 * c + i))
        secret = write_jpeg(src / "apple" / "secret.jpg", photo(1450))
        write_jpeg(src / "pear" / "sub" / "hidden.jpg", photo(1451))
        write_jpeg(src / "plum" / "plum_0.jpg", photo(1452))
        write_jpeg(src / "apple" / "bad.jpg", photo(1453))
        (src / "apple" / "bad.jpg").write_bytes(b"not an image")
        for path in [base, *base.rglob("*")]:
            os.chown(path, 65534, 65534)
        base.chmod(0o755)
        secret.chmod(0o000)
        (src / "pear" / "sub").chmod(0o000)
        (src / "plum").chmod(0o000)
        proc = subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, str(tmp_path / "warm"), "data", "import", str(src), str(base / "ds")],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
        )
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        assert secret.exists()  # left where it was, never moved
        assert not (base / "ds" / "rejects" / "apple" / "secret.jpg").exists()
        rows = _csv_rows(base / "ds" / "rejects.csv")
        assert [Path(r["original"]).name for r in rows] == ["bad.jpg"]
        assert "could not read 1 file(s) and 2 folder(s)" in proc.stdout, proc.stdout
        for where in ("secret.jpg", "pear/sub", "plum"):
            assert any(where in line and "ermission denied" in line for line in proc.stderr.splitlines()), proc.stderr
        manifest = json.loads((base / "ds" / "dataset.json").read_text())
        assert {Path(u["path"]).name for u in manifest["unreadable"]} == {"secret.jpg", "sub", "plum"}
    finally:
        for path in [base, *base.rglob("*")] if base.exists() else []:
            path.chmod(0o755) if path.is_dir() or path.name == "secret.jpg" else None
        shutil.rmtree(base, ignore_errors=True)


def test_png_header_claiming_900_megapixels_is_a_reject_not_a_crash(tmp_path: Path, cli) -> None:
    src = tmp_path / "src"
    for c, label in enumerate(("a", "b")):
        for i in range(4):
            write_jpeg(src / label / f"{i}.jpg", photo(1500 + 10 * c + i))
    bomb = write_png_claiming(src / "a" / "bomb.png", 30000, 30000)
    assert bomb.stat().st_size < 10_000
    result = cli("data", "import", src, tmp_path / "ds")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    rows = _csv_rows(tmp_path / "ds" / "rejects.csv")
    assert [Path(r["original"]).name for r in rows] == ["bomb.png"]
    assert "30000x30000" in rows[0]["reason"] and "50 megapixels" in rows[0]["reason"], rows[0]
    assert "--max-pixels" in rows[0]["reason"]

    small = cli("data", "import", src, tmp_path / "ds2", "--max-pixels", "10000", "--no-move")
    assert small.returncode == 1 and "no usable images" in small.stderr  # 128x128 photos are over 10000 px
    assert "128x128" in (tmp_path / "ds2" / "rejects.csv").read_text()


def test_summary_names_the_rejects_folder_only_when_files_were_moved(tmp_path: Path, cli) -> None:
    src = tmp_path / "src"
    for c, label in enumerate(("a", "b")):
        for i in range(4):
            write_jpeg(src / label / f"{i}.jpg", photo(1600 + 10 * c + i))
    result = cli("data", "import", src, tmp_path / "ds")
    assert result.returncode == 0, result.stderr
    assert "rejected 0 file(s)\n" in result.stdout
    assert str(tmp_path / "ds" / "rejects") not in result.stdout  # neither rejects/ nor rejects.csv
    assert not (tmp_path / "ds" / "rejects").exists()
