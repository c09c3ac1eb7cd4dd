"""Calibrated scores: temperature scaling on real features, thresholds applied on the device.

The temperature test uses real backbone features of the shared flowers5 photos and a
deliberately over-confident (barely regularised) logistic-regression head; the device tests
use the shared quantized MobileNetV2 made into a bundle whose manifest carries a calibration
and per-class thresholds, as ``export --target-precision`` writes them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli, testdata_path

from edgesight.device.classify import Classifier, apply_temperature
from edgesight.device.core.errors import BundleError
from edgesight.device.core.manifest import check_manifest
from edgesight.device.core.preprocess import read_image
from edgesight.device.smoothing import StateSmoother
from edgesight.trainer.calibration import calibrate, class_thresholds, ece, fit_temperature

CAT = "Egyptian cat"


@pytest.mark.slow
def test_temperature_scaling_lowers_ece_on_held_out_photos(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from edgesight.trainer.dataset import Dataset
    from edgesight.trainer.issues import backbone_features

    shutil.copytree(testdata_path("datasets", "flowers5"), tmp_path / "src")
    assert run_cli("data", "import", tmp_path / "src", tmp_path / "ds", "--split", "50/25/25").returncode == 0
    dataset = Dataset.load(tmp_path / "ds")
    weights = testdata_path("weights", "mobilenet_v2_1.0_160_no_top.weights.h5")
    x = backbone_features(dataset, str(weights))
    y = np.array(dataset.targets)
    split = np.array(dataset.splits)
    head = LogisticRegression(C=1e4, max_iter=5000).fit(x[split == "train"] * 20, y[split == "train"])
    val, test = (head.predict_proba(x[split == s] * 20) for s in ("val", "test"))
    y_val, y_test = y[split == "val"], y[split == "test"]
    t = fit_temperature(val, y_val)
    assert t > 1.0  # over-confident scores are softened
    before, after = ece(test, y_test), ece(apply_temperature(test, t), y_test)
    assert after < before, (before, after, t)
    # the top-1 answers do not change
    assert np.array_equal(apply_temperature(test, t).argmax(1), test.argmax(1))
    result = calibrate(
        (val, y_val),
        {"int8": (test, y_test)},
        dataset.labels,
        fitted_on="int8",
        target_precision=0.9,
        plot_path=tmp_path / "rel.png",
    )
    assert result.section["ece_after"] < result.section["ece_before"]
    assert (tmp_path / "rel.png").stat().st_size > 1000
    assert all(0 <= v <= 1 for v in result.thresholds.values())


def test_class_thresholds_reach_the_target_precision() -> None:
    # class 0: right at 0.9, 0.8, 0.7; wrong at 0.6; right at 0.5 -> precision 0.95 needs >= 0.7
    top = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    scores = np.stack([top, 1 - top], axis=1)
    targets = np.array([0, 0, 0, 1, 0])
    thresholds, notes = class_thresholds(scores, targets, ["a", "b"], 0.95)
    assert thresholds == {"a": 0.7}
    assert any("b: predicted 0 time(s)" in n for n in notes)


@pytest.fixture(scope="module")
def calibrated_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cal") / "bundle"
    model = testdata_path("models", "mobilenet_v2_1.0_224_quant.tflite")
    labels = testdata_path("models", "imagenet_labels.txt")
    assert run_cli("bundle", "create", model, "--labels", labels, "--out", out).returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["calibration"] = {"temperature": 1.5, "ece_before": 0.1, "ece_after": 0.05}
    manifest["thresholds"] = {CAT: 0.99}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_classifier_applies_the_temperature(calibrated_bundle: Path) -> None:
    frame = read_image(testdata_path("images", "cat.bmp"))
    plain = Classifier.open(
        testdata_path("models", "mobilenet_v2_1.0_224_quant.tflite"), testdata_path("models", "imagenet_labels.txt")
    )
    calibrated = Classifier.open(calibrated_bundle)
    raw, scaled = plain.classify(frame).best, calibrated.classify(frame).best
    assert raw.label == scaled.label == CAT
    assert scaled.score < raw.score - 0.05  # T = 1.5 softens an 0.88
    assert calibrated.thresholds == {calibrated.labels.index(CAT): 0.99}


def test_class_threshold_turns_a_low_score_frame_into_unknown(calibrated_bundle: Path) -> None:
    classifier = Classifier.open(calibrated_bundle)
    top = classifier.classify(read_image(testdata_path("images", "cat.bmp"))).top
    assert not classifier.accepted(top[0])
    smoother = StateSmoother(window=1, threshold=0.1, min_dwell=0, class_thresholds=classifier.thresholds)
    assert smoother.update(top, 0.0).label == "none"  # the no-label state ([state] unknown_label)
    smoother.reset({})  # a bundle without thresholds: the [state] threshold alone decides
    smoother.current = None
    assert smoother.update(top, 1.0).label == CAT


def test_predict_threshold_prints_unknown(calibrated_bundle: Path) -> None:
    cat = testdata_path("images", "cat.bmp")
    result = run_cli("predict", calibrated_bundle, cat)
    assert result.returncode == 0, result.stderr
    assert "unknown (below threshold 0.99: best Egyptian cat" in result.stdout
    assert "unknown" not in run_cli("predict", calibrated_bundle, cat, "--threshold", "0.2").stdout
    line = json.loads(run_cli("predict", calibrated_bundle, cat, "--json").stdout.splitlines()[0])
    assert line["label"] == "unknown" and line["accepted"] is False
    assert_one_line_error(run_cli("predict", calibrated_bundle, cat, "--threshold", "1.5"), "--threshold", code=2)


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("calibration", {"temperature": 0}, "calibration.temperature"),
        ("calibration", {"ece_before": 0.1}, "calibration.temperature"),
        ("calibration", 3, "calibration: expected an object"),
        ("thresholds", {"cat": 1.5}, "thresholds.cat"),
    ],
)
def test_manifest_refuses_bad_calibration(calibrated_bundle: Path, key: str, value: object, fragment: str) -> None:
    manifest = json.loads((calibrated_bundle / "manifest.json").read_text())
    manifest[key] = value
    with pytest.raises(BundleError, match=fragment.replace(".", r"\.")):
        check_manifest(manifest, Path("manifest.json"))
