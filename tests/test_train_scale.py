"""Training that scales: streamed inputs, tf.distribute strategies, fail-fast weights (issue 17).

Real TensorFlow on real photos (flowers5, shared MobileNetV2 weights) and drawn shapes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli, testdata_path
from trainer_images import write_shapes

from edgesight.trainer.inputs import RowFile, Rows, should_stream

# The real trainings and conversions are `long` (scripts/long_tests.sh); the file format, the threshold
# and the fail-fast check run with the suite.
QUICK = ("--epochs-head", "6", "--epochs-finetune", "0", "--views", "1", "--batch-size", "16")


def test_row_file_reads_back_any_rows_in_order(tmp_path: Path) -> None:
    data = np.arange(10 * 4 * 4 * 3, dtype=np.uint8).reshape(10, 4, 4, 3)
    store = RowFile(tmp_path / "x.u8", 10, (4, 4, 3), np.uint8)
    store.write(iter(data), "fp")
    assert store.complete("fp") and not store.complete("other")
    rows = Rows(store).take(np.array([7, 2, 3, 4, 9]))
    assert np.array_equal(rows.array(), data[[7, 2, 3, 4, 9]])
    assert np.array_equal(np.concatenate(list(rows.batches(2))), data[[7, 2, 3, 4, 9]])


def test_stream_threshold() -> None:
    assert not should_stream(500, 160, 1500, 1280, "auto")
    assert should_stream(20000, 160, 60000, 1280, "auto")
    assert should_stream(10, 96, 10, 1280, "on") and not should_stream(10**6, 224, 0, 1280, "off")


@pytest.fixture(scope="module")
def flowers(tmp_path_factory) -> Path:
    dataset = tmp_path_factory.mktemp("scale") / "flowers"
    result = run_cli("data", "import", testdata_path("datasets", "flowers5"), dataset, timeout=300)
    assert result.returncode == 0, result.stderr
    return dataset


@pytest.mark.long
@pytest.mark.timeout(1800)
def test_streamed_and_in_memory_training_agree(flowers: Path, tmp_path: Path) -> None:
    weights = testdata_path("weights", "mobilenet_v2_1.0_160_no_top.weights.h5")
    accuracy = {}
    for stream in ("off", "on"):
        run = tmp_path / stream
        result = run_cli("train", flowers, "--out", run, "--weights", weights, "--stream", stream, *QUICK, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        info = json.loads((run / "run.json").read_text())
        accuracy[stream] = info["metrics"]
        assert not (run / "cache").exists()  # a finished run does not keep the streamed pixels
    for key in ("val_accuracy", "test_accuracy"):
        # 20 val / 20 test photos: one photo is 0.05; the two paths see the same pixels, shuffled differently
        assert abs(accuracy["off"][key] - accuracy["on"][key]) <= 0.15, accuracy
        assert accuracy["on"][key] >= 0.6, accuracy  # the probe on these features reaches ~0.79


@pytest.mark.long
@pytest.mark.timeout(1800)
def test_streamed_kfold_and_resume(flowers: Path, tmp_path: Path) -> None:
    weights = testdata_path("weights", "mobilenet_v2_1.0_160_no_top.weights.h5")
    result = run_cli(
        "train",
        flowers,
        "--out",
        tmp_path / "cv",
        "--kfold",
        "2",
        "--weights",
        weights,
        "--stream",
        "on",
        *QUICK,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "cv" / "kfold.json").read_text())
    assert summary["head_only_mean_accuracy"] >= 0.6, summary


MIRRORED = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from edgesight.trainer.config import TrainConfig
from edgesight.trainer.train import train
cfg = TrainConfig(arch="mobilenet_v2", alpha=0.35, size=96, weights="none", epochs_head=2, epochs_finetune=1,
                  unfreeze=10, batch_size=8, views=1, lr_head=0.01)
lines = []
result = train(sys.argv[1], sys.argv[2], cfg, strategy="mirrored", stream=sys.argv[3], verbose=0, say=lines.append)
print("\\n".join(lines))
print("metrics", result.metrics)
"""


@pytest.mark.long
@pytest.mark.timeout(1800)
def test_mirrored_strategy_on_two_logical_cpus_trains_and_exports(tmp_path: Path) -> None:
    src = write_shapes(tmp_path / "shapes", per_class=12, size=96)
    dataset, run, bundle = tmp_path / "ds", tmp_path / "run", tmp_path / "bundle"
    assert run_cli("data", "import", src, dataset).returncode == 0
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(dataset), str(run), "on"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "MirroredStrategy on 2 devices, global batch 16" in proc.stdout, proc.stdout
    info = json.loads((run / "run.json").read_text())
    assert set(info["metrics"]) >= {"train_accuracy", "val_accuracy", "test_accuracy"}
    exported = run_cli("export", run, "--out", bundle, timeout=600)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert (bundle / "manifest.json").is_file() or any(bundle.glob("*.tflite"))


def test_imagenet_weights_offline_fail_before_any_photo_and_leave_no_run_dir(tmp_path: Path) -> None:
    src = write_shapes(tmp_path / "shapes", per_class=6, size=96)
    dataset, run = tmp_path / "ds", tmp_path / "run"
    assert run_cli("data", "import", src, dataset).returncode == 0
    offline = {
        "KERAS_HOME": str(tmp_path / "keras"),  # nothing cached
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
    }
    result = run_cli("train", dataset, "--out", run, "--weights", "imagenet", "--size", "96", env=offline, timeout=300)
    assert_one_line_error(result, "ImageNet weights", "--weights PATH", code=1)
    assert not run.exists()
    assert "loading train" not in result.stdout + result.stderr and "phase 1" not in result.stdout
