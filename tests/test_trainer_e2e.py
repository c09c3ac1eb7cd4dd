"""End to end on a dataset the test draws: import -> train -> export -> the device's predict -> evaluate.

Real TensorFlow training (MobileNetV2 alpha 0.35 at 96 px, random init, a couple of epochs), real
TFLite conversion, and the device's LiteRT classifier loading the bundle with no extra flags.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli
from trainer_images import SHAPE_CLASSES, write_shapes

from edgesight.device.classify import Classifier
from edgesight.device.core.bundle import load_bundle

pytestmark = pytest.mark.slow
TRAIN_FLAGS = (
    "--arch",
    "mobilenet_v2",
    "--alpha",
    "0.35",
    "--size",
    "96",
    "--weights",
    "none",
    "--epochs-head",
    "3",
    "--epochs-finetune",
    "1",
    "--unfreeze",
    "10",
    "--batch-size",
    "16",
    "--lr-head",
    "0.01",
)
AGREEMENT_FLOOR = 0.8  # int8 vs float top-1 on the test split


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    src = write_shapes(root / "shapes", per_class=20)
    dataset, run, bundle = root / "dataset", root / "run", root / "bundle"
    for args in (
        ("data", "import", src, dataset),
        ("train", dataset, "--out", run, *TRAIN_FLAGS),
        ("export", run, "--out", bundle),
    ):
        result = run_cli(*args, timeout=600)
        assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
    return {"src": src, "dataset": dataset, "run": run, "bundle": bundle}


def test_run_directory_and_training_logs(trained) -> None:
    run = trained["run"]
    info = json.loads((run / "run.json").read_text())
    assert info["labels"] == list(SHAPE_CLASSES)
    assert info["config"]["alpha"] == 0.35 and info["config"]["size"] == 96 and info["config"]["weights"] == "none"
    assert (run / "model.keras").is_file() and (run / "best.weights.h5").is_file()
    assert list((run / "logs").rglob("events.out.tfevents.*")), "no TensorBoard logs"
    history = json.loads((run / "history.json").read_text())
    assert len(history["head_loss"]) == 3 and len(history["finetune_loss"]) == 1
    assert json.loads((run / "state.json").read_text())["phase"] == "done"


def test_bundle_manifest_holds_contract_metrics_and_distribution(trained) -> None:
    manifest = json.loads((trained["bundle"] / "manifest.json").read_text())
    assert manifest["default_model"] == "model.tflite"
    assert set(manifest["files"]) == {"model.tflite", "model_fp16.tflite", "model_float.tflite", "labels.txt"}
    assert manifest["input"]["size"] == [96, 96] and manifest["input"]["mean"] == 0 and manifest["input"]["std"] == 1
    assert manifest["output"] == {"num_classes": 3, "background_index": None}
    assert manifest["architecture"]["family"] == "mobilenet_v2" and manifest["architecture"]["alpha"] == 0.35
    dtype, scale, zero_point = manifest["models"]["model.tflite"]["input"]
    assert dtype == "uint8" and abs(scale - 1.0) < 0.01 and zero_point == 0  # raw pixels: the fast path
    metrics = manifest["metrics"]
    assert metrics["int8"]["images"] == metrics["float"]["images"] == 6
    assert metrics["agreement_with_float"]["int8"]["top1_agreement"] >= AGREEMENT_FLOOR
    assert metrics["agreement_with_float"]["fp16"]["top1_agreement"] == 1.0
    dist = manifest["test_distribution"]
    assert sum(dist["top1_score_histogram"]["counts"]) == 6 and len(dist["top1_score_histogram"]["counts"]) == 10
    assert abs(sum(dist["predicted_class_frequency"].values()) - 1.0) < 1e-3
    # temperature scaling fitted on the val split of the int8 model, ECE measured on the test split
    calibration = manifest["calibration"]
    assert 0.05 <= calibration["temperature"] <= 20.0 and calibration["fitted_on"] == "val split, int8"
    assert set(calibration["variants"]) == {"int8", "fp16", "float"}
    for figures in calibration["variants"].values():
        assert 0.0 <= figures["ece_after"] <= 1.0 and 0.0 <= figures["ece_before"] <= 1.0
    assert "thresholds" not in manifest  # only with --target-precision


def test_export_with_a_target_precision_stores_per_class_thresholds(trained, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    result = run_cli(
        "export", trained["run"], "--out", bundle, "--quant", "int8", "--no-probes", "--target-precision", "0.9"
    )
    assert result.returncode == 0, result.stderr
    assert "per-class thresholds for precision 0.9" in result.stdout
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["calibration"]["target_precision"] == 0.9
    thresholds = manifest["thresholds"]
    assert set(thresholds) <= set(SHAPE_CLASSES) and all(0.0 < t <= 1.0 for t in thresholds.values())
    assert load_bundle(bundle).manifest["thresholds"] == thresholds  # the device accepts what export wrote


def test_device_predict_loads_bundle_without_flags(trained) -> None:
    images = sorted((trained["src"] / "circle").glob("*.jpg"))[:3]
    result = run_cli("predict", trained["bundle"], *images, "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert {p["label"] for p in row["top"]} == set(SHAPE_CLASSES)
        assert abs(sum(p["score"] for p in row["top"]) - 1.0) < 0.05
        assert row["top"][0]["score"] >= row["top"][1]["score"]


def test_float_and_int8_agree_on_the_test_photos(trained) -> None:
    """The same held-out photos through the device classifier: int8 and float pick the same class."""
    spec = load_bundle(trained["bundle"])
    int8 = Classifier.open(trained["bundle"])
    float_model = Classifier.open(trained["bundle"], model_file="model_float.tflite")
    assert int8.contract.dtype == "uint8" and float_model.contract.dtype == "float32"
    assert spec.background_index is None
    from edgesight.device.core.preprocess import read_image
    from edgesight.trainer.dataset import Dataset

    paths, _ = Dataset.load(trained["dataset"]).subset("all")
    same = [int8.classify(read_image(p)).best.index == float_model.classify(read_image(p)).best.index for p in paths]
    assert np.mean(same) >= AGREEMENT_FLOOR


def test_evaluate_writes_report_and_confusion_png(trained, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = run_cli(
        "evaluate", trained["bundle"], trained["dataset"], "--report", report, "--split", "all", timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "macro F1" in result.stdout and "confusion matrix" in result.stdout
    png = (report / "confusion.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    page = (report / "report.html").read_text()
    for text in ("Confusion matrix", "Per class", "Agreement with the float model", *SHAPE_CLASSES):
        assert text in page
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["images"] == 60 and len(metrics["confusion_matrix"]) == 3
    assert sum(map(sum, metrics["confusion_matrix"])) == 60
    assert {row["label"] for row in metrics["per_class"]} == set(SHAPE_CLASSES)
    if metrics["worst_mistakes"]:
        assert metrics["gradcam"] and list((report / "images").glob("gradcam_*.jpg"))
    # calibration of every variant as the device scores it (the bundle's temperature applied)
    calibration = metrics["calibration"]
    assert set(calibration["models"]) == {"model.tflite", "model_fp16.tflite", "model_float.tflite"}
    fitted = json.loads((trained["bundle"] / "manifest.json").read_text())["calibration"]["temperature"]
    assert calibration["temperature"] == (None if fitted == 1.0 else fitted)  # T = 1 changes nothing
    for row in calibration["models"].values():
        assert 0.0 <= row["ece"] <= 1.0
        assert (fitted == 1.0) or 0.0 <= row["ece_without_temperature"] <= 1.0
        assert len(row["reliability"]) == 10 and sum(b["count"] for b in row["reliability"]) == 60
    assert "Calibration" in page and "ECE as shipped" in page and 'src="reliability.png"' in page
    assert (report / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "model.tflite calibration: ECE" in result.stdout


def test_export_refuses_a_directory_that_is_not_a_run(trained, tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli("export", trained["dataset"], "--out", tmp_path / "b"), "not a finished training run", code=2
    )
    assert_one_line_error(
        run_cli("train", trained["dataset"], "--out", trained["run"], *TRAIN_FLAGS),
        "already holds a trained model",
        code=2,
    )
