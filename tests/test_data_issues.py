"""``edgesight data issues`` on the shared flowers5 photos with injected label noise.

Real backbone (the shared MobileNetV2 weights), real cross-validation and cleanlab: eight daisy
photos are moved into the roses folder before import, and most of them must rank near the top
of issues.csv, with "daisy" suggested.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import pytest
from conftest import assert_one_line_error, run_cli, testdata_path

pytestmark = pytest.mark.slow
NOISY = 8
TOP = 20  # the injected photos must be among the first TOP rows


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> dict[str, Path]:
    """flowers5 as a tree split elsewhere (train/ and test/, kept by --keep-split) with three planted
    faults: daisies filed as roses, a hot dog filed as a sunflower (an outlier), and a mirror image
    of a train tulip in test/ (leakage: the import's perceptual hash does not see mirror images)."""
    flowers = testdata_path("datasets", "flowers5")
    weights = testdata_path("weights", "mobilenet_v2_1.0_160_no_top.weights.h5")
    root = tmp_path_factory.mktemp("issues")
    src = root / "src"
    shutil.copytree(flowers, src / "train")
    for label in sorted(p.name for p in (src / "train").iterdir()):  # test/: three photos per class
        (src / "test" / label).mkdir(parents=True)
        for photo in sorted((src / "train" / label).iterdir())[-3:]:
            photo.rename(src / "test" / label / photo.name)
    moved = []
    for photo in sorted((src / "train" / "daisy").iterdir())[:NOISY]:
        target = src / "train" / "roses" / f"noisy_{photo.name}"
        photo.rename(target)
        moved.append(target)
    outlier = src / "train" / "sunflowers" / "outlier_hot_dog.jpg"
    shutil.copy(testdata_path("images", "hot_dog.jpg"), outlier)
    original = sorted((src / "train" / "tulips").iterdir())[0]
    copy = src / "test" / "tulips" / "leak_copy.jpg"
    cv2.imwrite(str(copy), cv2.imread(str(original))[:, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    dataset, out = root / "ds", root / "report"
    imported = run_cli("data", "import", src, dataset, "--keep-split")
    assert imported.returncode == 0, imported.stderr
    result = run_cli("data", "issues", dataset, "--weights", weights, "--out", out, timeout=600)
    assert result.returncode == 0, result.stderr
    return {"dataset": dataset, "out": out, "moved": moved, "stdout": result.stdout, "leak": (original, copy)}  # type: ignore[dict-item]


def _rows(noisy) -> list[dict[str, str]]:
    with (noisy["out"] / "issues.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_injected_label_noise_ranks_near_the_top(noisy) -> None:
    rows = _rows(noisy)
    top = [row for row in rows[:TOP] if row["kind"] == "label"]
    found = [row for row in top if Path(row["path"]).name.startswith("noisy_")]
    assert len(found) >= 6, [r["path"] for r in rows[:TOP]]
    assert all(row["label"] == "roses" for row in found)
    assert sum(row["suggested_label"] == "daisy" for row in found) >= len(found) - 1  # what they really are
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    # nothing was moved or relabelled
    assert all(p.exists() for p in noisy["moved"])


def test_a_photo_far_from_every_class_is_an_outlier(noisy) -> None:
    outliers = [row for row in _rows(noisy) if row["kind"] == "outlier"]
    hot_dog = [row for row in outliers if Path(row["path"]).name == "outlier_hot_dog.jpg"]
    assert hot_dog, outliers
    assert hot_dog[0]["label"] == "sunflowers" and "nearest class centre" in hot_dog[0]["detail"]
    assert len(outliers) <= 5, "a handful of outliers, not a fraction of the dataset"


def test_a_near_duplicate_across_splits_is_leakage(noisy) -> None:
    original, copy = noisy["leak"]
    leaks = [row for row in _rows(noisy) if row["kind"] == "leakage"]
    pair = [
        row
        for row in leaks
        if original.name in row["path"] + row["detail"] and copy.name in row["path"] + row["detail"]
    ]
    assert len(pair) == 1, leaks
    assert "near-duplicate of" in pair[0]["detail"] and "cosine" in pair[0]["detail"]
    assert {"train", "test"} == {pair[0]["split"], "test" if "(test)" in pair[0]["detail"] else "train"}
    assert len(leaks) <= 3, leaks  # the planted pair, not every two similar flowers
    assert f"{len(leaks)} cross-split near-duplicate(s)" in (noisy["out"] / "issues.html").read_text(encoding="utf-8")


def test_summary_and_html_page(noisy) -> None:
    out = noisy["stdout"]
    assert "likely label error(s)" in out and "nothing was moved" in out
    assert "confused: " in out
    page = (noisy["out"] / "issues.html").read_text(encoding="utf-8")
    assert 'src="../src/train/roses/noisy_' in page  # relative, so the folder can be copied or served
    assert "<script" not in page


def test_one_class_dataset_is_one_line_exit_1(tmp_path: Path) -> None:
    src = tmp_path / "src" / "daisy"
    src.mkdir(parents=True)
    for photo in sorted(testdata_path("datasets", "flowers5", "daisy").iterdir())[:6]:
        shutil.copy(photo, src / photo.name)
    assert run_cli("data", "import", tmp_path / "src", tmp_path / "ds").returncode == 0
    result = run_cli("data", "issues", tmp_path / "ds")
    assert_one_line_error(result, "one class", "daisy", code=1)


def test_weights_and_run_contradict(tmp_path: Path) -> None:
    result = run_cli("data", "issues", tmp_path, "--weights", "x", "--run", "y")
    assert result.returncode == 2 and "not allowed with" in result.stderr
