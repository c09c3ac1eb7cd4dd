"""The corruption sweep: corruptions themselves (no TensorFlow), then a real bundle on the device runtime."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli, testdata_path
from quality_models import trained_bundle

from edgesight.device.core.bundle import load_bundle
from edgesight.device.core.errors import UsageError
from edgesight.trainer.dataset import Dataset
from edgesight.trainer.evaluate import shipped_variants
from edgesight.trainer.images import read_photo
from edgesight.trainer.measure import score_frames
from edgesight.trainer.robustness import CORRUPTIONS, SEVERITIES, corrupt, parse_severities, sweep

# the shared fixture trains a model; the sweep runs every corruption through each variant:
# minutes on 2 cores, so scripts/long_tests.sh runs these, not scripts/test.sh.
pytestmark = pytest.mark.long


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.imread(str(testdata_path("images", "cat.bmp")), cv2.IMREAD_COLOR)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_corruption_keeps_the_frame_and_grows_with_severity(photo: np.ndarray, name: str) -> None:
    distances = []
    for severity in SEVERITIES:
        out = corrupt(photo, name, severity, seed=3)
        assert out.shape == photo.shape and out.dtype == np.uint8
        assert np.array_equal(out, corrupt(photo, name, severity, seed=3)), "not deterministic"
        distances.append(float(np.mean(np.abs(out.astype(np.int16) - photo))))
    assert distances[0] > 0, f"{name} at severity 1 changed nothing"
    assert distances[-1] > distances[0], f"{name}: severity 5 is not further from the photo than 1: {distances}"


def test_severities_and_names_are_checked() -> None:
    assert parse_severities("5,1,3,3") == (1, 3, 5)
    for bad in ("0", "6", "a", ""):
        with pytest.raises(UsageError, match="severities"):
            parse_severities(bad)
    with pytest.raises(UsageError, match="unknown corruption"):
        corrupt(np.zeros((8, 8, 3), np.uint8), "rain", 1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return trained_bundle(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the shared fixture trains a model on first use
def test_severity_five_never_beats_clean_where_the_model_is_right(trained) -> None:
    spec = load_bundle(trained["bundle"])
    variants = shipped_variants(spec, trained["bundle"])
    paths, targets = Dataset.load(trained["dataset"]).subset("all")
    frames = [read_photo(p) for p in paths]
    right = score_frames(variants[0].classifier, frames).argmax(axis=1) == targets
    assert right.sum() >= 10, "the small model should get some photos right"
    kept = [f for f, ok in zip(frames, right) if ok]
    block = sweep(variants[:1], kept, targets[right], severities=(1, 5), input_side=spec.contract.height)
    entry = block["variants"][variants[0].file]
    assert entry["clean"] == 1.0
    for name in CORRUPTIONS:
        assert entry["accuracy"][name]["5"] <= entry["clean"], name
    s1 = np.mean([entry["accuracy"][n]["1"] for n in CORRUPTIONS])
    s5 = np.mean([entry["accuracy"][n]["5"] for n in CORRUPTIONS])
    assert s5 <= s1 <= 1.0, (s1, s5)  # the drawn shapes are easy: severity 5 may still be all right
    assert entry["mean_corruption_accuracy"] <= 1.0 and entry["relative_to_clean"] <= 1.0


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the shared fixture trains a model on first use
def test_evaluate_robustness_writes_json_plot_and_table(trained, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = run_cli(
        "evaluate", trained["bundle"], trained["dataset"], "--split", "all", "--report", report,
        "--robustness", "--severities", "1,5", "--no-gradcam", timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "robustness" in result.stdout and "int8 vs float" in result.stdout
    metrics = json.loads((report / "metrics.json").read_text())
    block = metrics["robustness"]
    assert block["severities"] == [1, 5] and set(block["corruptions"]) == set(CORRUPTIONS)
    precisions = {e["precision"] for e in block["variants"].values()}
    assert {"int8", "float"} <= precisions
    assert set(block["int8_drop_vs_float"]) == {*CORRUPTIONS, "clean"}
    assert (report / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    page = (report / "report.html").read_text()
    assert "Robustness to common corruptions" in page and "gaussian noise" in page and "float - int8" in page
    # the readable architecture and the training curves (the manifest records the run directory)
    assert "MobileNetV2 alpha 1.0, 96x96 input, head:" in page and "dense(3, softmax)" in page
    assert "Training curves" in page and (report / "training.png").is_file()
    if metrics["worst_mistakes"]:
        assert metrics["occlusion"] and list((report / "images").glob("occlusion_*.jpg"))


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the shared fixture trains a model on first use
def test_bad_inputs_are_one_line(trained, tmp_path: Path) -> None:
    result = run_cli("evaluate", trained["bundle"], trained["dataset"], "--robustness", "--severities", "7")
    assert_one_line_error(result, "--severities", code=2)
    # a dataset whose test split is empty, and a dataset of one class
    result = run_cli(
        "evaluate", trained["bundle"], _rewritten(trained["dataset"], tmp_path / "no_test", no_test=True),
        "--robustness", "--no-gradcam", timeout=300,
    )  # fmt: skip
    assert_one_line_error(result, "test split is empty")
    result = run_cli(
        "evaluate", trained["bundle"], _rewritten(trained["dataset"], tmp_path / "one_class", one_class=True),
        "--robustness", "--no-gradcam", timeout=300,
    )  # fmt: skip
    assert_one_line_error(result)


def _rewritten(dataset: Path, out: Path, *, no_test: bool = False, one_class: bool = False) -> Path:
    """A copy of the dataset's index (photos left in place, paths made absolute), changed as asked."""
    index = json.loads((dataset / "dataset.json").read_text())
    samples = []
    for sample in index["samples"]:
        sample["path"] = str((dataset / sample["path"]).resolve())
        if no_test and sample["split"] == "test":
            sample["split"] = "train"
        if not one_class or sample["label"] == index["labels"][0]:
            samples.append(sample)
    index["samples"] = samples
    if one_class:
        index["labels"] = index["labels"][:1]
    out.mkdir(parents=True)
    (out / "dataset.json").write_text(json.dumps(index))
    (out / "labels.txt").write_text("".join(f"{label}\n" for label in index["labels"]))
    return out
