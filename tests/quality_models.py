"""One small trained run and its exported bundle, shared by the robustness and adversarial tests.

Real TensorFlow training (MobileNetV2 alpha 1.0 at 96 px from the shared weights) on the drawn shapes,
real conversion; made once per pytest session under its base temp folder, whichever test file
asks first, so the two files do not train twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TESTDATA, run_cli
from trainer_images import write_shapes

WEIGHTS = TESTDATA / "weights" / "mobilenet_v2_1.0_160_no_top.weights.h5"
# From the shared pretrained weights: a random-init model stays near chance on the Keras side,
# where an attack has nothing to lower.
TRAIN_FLAGS = (
    "--arch", "mobilenet_v2", "--alpha", "1.0", "--size", "96", "--weights", str(WEIGHTS),
    "--epochs-head", "4", "--epochs-finetune", "1", "--unfreeze", "10", "--batch-size", "16",
    "--lr-head", "0.01",
)  # fmt: skip


def trained_bundle(factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"dataset", "run", "bundle"} of the shared small run (trained on first use)."""
    root = factory.getbasetemp() / "quality-model"
    paths = {"dataset": root / "dataset", "run": root / "run", "bundle": root / "bundle"}
    if not WEIGHTS.is_file():
        pytest.skip(f"shared test data not found: {WEIGHTS} (set EDGESIGHT_TESTDATA)")
    if (paths["bundle"] / "manifest.json").is_file():
        return paths
    src = write_shapes(root / "shapes", per_class=20)
    for args in (
        ("data", "import", src, paths["dataset"]),
        ("train", paths["dataset"], "--out", paths["run"], *TRAIN_FLAGS),
        ("export", paths["run"], "--out", paths["bundle"]),
    ):
        result = run_cli(*args, timeout=900)
        assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return paths
