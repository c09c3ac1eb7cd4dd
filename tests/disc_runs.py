"""One tiny real training run on disc photos, shared by the export tests of a pytest session.

``export --onnx/--edgetpu``, the MediaPipe metadata checks and others need *a* trained run, not
each their own: it is trained once per session under the base temp folder, whichever file asks first.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli

COLOURS = {"red": (40, 40, 220), "green": (40, 200, 40), "blue": (220, 60, 40)}  # BGR
TRAIN_FLAGS = (
    "--size", "96", "--alpha", "0.35", "--weights", "none",
    "--epochs-head", "1", "--epochs-finetune", "0", "--batch-size", "16",
)  # fmt: skip


def write_photos(root, per_class: int = 12) -> None:
    """Noisy backgrounds with one coloured disc: enough for a one-epoch run to be a real run."""
    rng = np.random.default_rng(0)
    for label, colour in COLOURS.items():
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            image = cv2.resize(rng.integers(90, 170, (16, 16, 3)).astype(np.uint8), (96, 96))
            centre = tuple(int(v) for v in rng.integers(30, 66, 2))
            cv2.circle(image, centre, int(rng.integers(12, 25)), colour, -1)
            cv2.imwrite(str(root / label / f"{label}_{i:02d}.jpg"), image)


def disc_run(factory: pytest.TempPathFactory) -> Path:
    """The run directory of a one-epoch training on 12 disc photos per class (trained on first use)."""
    root = factory.getbasetemp() / "disc-run"
    run = root / "run"
    if (run / "state.json").is_file() and '"done"' in (run / "state.json").read_text():
        return run
    write_photos(root / "photos")
    imported = run_cli("data", "import", root / "photos", root / "dataset")
    assert imported.returncode == 0, imported.stderr
    trained = run_cli("train", root / "dataset", "--out", run, *TRAIN_FLAGS, timeout=300)
    assert trained.returncode == 0, trained.stderr
    return run
