"""One small trained run and its exported bundle, shared by the robustness and adversarial tests.

Real TensorFlow training (MobileNetV2 alpha 0.35 at 96 px, random init) on the drawn shapes,
real conversion; made once per pytest session under its base temp folder, whichever test file
asks first, so the two files do not train twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli
from trainer_images import write_shapes

TRAIN_FLAGS = (
    "--arch", "mobilenet_v2", "--alpha", "0.35", "--size", "96", "--weights", "none",
    "--epochs-head", "4", "--epochs-finetune", "1", "--unfreeze", "10", "--batch-size", "16",
    "--lr-head", "0.01",
)  # fmt: skip


def trained_bundle(factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"dataset", "run", "bundle"} of the shared small run (trained on first use)."""
    root = factory.getbasetemp() / "quality-model"
    paths = {"dataset": root / "dataset", "run": root / "run", "bundle": root / "bundle"}
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
