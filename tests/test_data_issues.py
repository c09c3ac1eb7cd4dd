"""``edgesight data issues`` on the shared flowers5 photos with injected label noise.

Real backbone (the shared MobileNetV2 weights), real cross-validation and cleanlab: eight daisy
photos are moved into the roses folder before import, and most of them must rank near the top
of issues.csv, with "daisy" suggested.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli, testdata_path

pytestmark = pytest.mark.slow
NOISY = 8
TOP = 20  # the injected photos must be among the first TOP rows


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> dict[str, Path]:
    flowers = testdata_path("datasets", "flowers5")
    weights = testdata_path("weights", "mobilenet_v2_1.0_160_no_top.weights.h5")
    root = tmp_path_factory.mktemp("issues")
    src = root / "src"
    shutil.copytree(flowers, src)
    moved = []
    for photo in sorted((src / "daisy").iterdir())[:NOISY]:
        target = src / "roses" / f"noisy_{photo.name}"
        photo.rename(target)
        moved.append(target)
    dataset, out = root / "ds", root / "report"
    assert run_cli("data", "import", src, dataset).returncode == 0
    result = run_cli("data", "issues", dataset, "--weights", weights, "--out", out, timeout=600)
    assert result.returncode == 0, result.stderr
    return {"dataset": dataset, "out": out, "moved": moved, "stdout": result.stdout}  # type: ignore[dict-item]


def test_injected_label_noise_ranks_near_the_top(noisy) -> None:
    with (noisy["out"] / "issues.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    top = [row for row in rows[:TOP] if row["kind"] == "label"]
    found = [row for row in top if Path(row["path"]).name.startswith("noisy_")]
    assert len(found) >= 6, [r["path"] for r in rows[:TOP]]
    assert all(row["label"] == "roses" and row["suggested_label"] == "daisy" for row in found[:4])
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    # nothing was moved or relabelled
    assert all(p.exists() for p in noisy["moved"])


def test_summary_and_html_page(noisy) -> None:
    out = noisy["stdout"]
    assert "likely label error(s)" in out and "nothing was moved" in out
    assert "confused: " in out
    page = (noisy["out"] / "issues.html").read_text(encoding="utf-8")
    assert 'src="../src/roses/noisy_' in page  # relative, so the folder can be copied or served
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
