"""FGSM and PGD on a real trained Keras model, transfer to its int8 bundle, and FGSM training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli
from quality_models import TRAIN_FLAGS, trained_bundle

# The shared fixture trains a model and the attacks run PGD: minutes on 2 cores, so scripts/long_tests.sh
# runs these (and scripts/quality_pass.sh the real pass), not scripts/test.sh.
pytestmark = [pytest.mark.long, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return trained_bundle(tmp_path_factory)


def test_fgsm_at_larger_eps_lowers_accuracy_and_transfers(trained) -> None:
    import keras

    from edgesight.device.core.bundle import load_bundle
    from edgesight.device.core.preprocess import fit_to_size, to_rgb
    from edgesight.trainer.adversarial import attack_sweep, fgsm
    from edgesight.trainer.dataset import Dataset
    from edgesight.trainer.evaluate import shipped_variants
    from edgesight.trainer.images import read_photo

    model = keras.models.load_model(trained["run"] / "model.keras")
    paths, y = Dataset.load(trained["dataset"]).subset("all")
    x = np.stack([fit_to_size(to_rgb(read_photo(p)), 96, 96, "centre") for p in paths])
    adv = fgsm(model, x, y, 4)
    assert adv.dtype == np.uint8 and int(np.max(np.abs(adv.astype(int) - x))) <= 4
    spec = load_bundle(trained["bundle"])
    variants = [v for v in shipped_variants(spec, trained["bundle"], onnx=False) if v.precision == "int8"]
    block = attack_sweep(model, x, y, variants, epsilons=(1, 8), steps=3)
    fgsm_acc, pgd_acc = block["attacks"]["fgsm"]["keras"], block["attacks"]["pgd"]["keras"]
    assert block["keras_clean"] > 0.5
    assert fgsm_acc["8"] < block["keras_clean"] and fgsm_acc["8"] <= fgsm_acc["1"], block
    assert pgd_acc["8"] <= fgsm_acc["8"] + 0.05, block  # the iterated attack is at least about as strong
    transfer = block["attacks"]["fgsm"]["transfer"][variants[0].file]
    assert transfer["8"] < block["device_clean"][variants[0].file], block


def test_evaluate_adversarial_needs_the_run(trained, tmp_path: Path) -> None:
    result = run_cli(
        "evaluate", trained["bundle"], trained["dataset"], "--adversarial", "--run", tmp_path, "--no-gradcam"
    )
    assert_one_line_error(result, "no model.keras", "adversarial")
    result = run_cli("evaluate", trained["bundle"], trained["dataset"], "--adversarial", "--epsilons", "x")
    assert_one_line_error(result, "--epsilons", code=2)


def test_evaluate_adversarial_report(trained, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = run_cli(
        "evaluate", trained["bundle"], trained["dataset"], "--split", "all", "--report", report,
        "--adversarial", "--epsilons", "2,8", "--pgd-steps", "2", "--no-occlusion", timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "FGSM float (Keras)" in result.stdout and "(transfer)" in result.stdout
    block = json.loads((report / "metrics.json").read_text())["adversarial"]
    assert block["epsilons"] == [2.0, 8.0] and set(block["attacks"]) == {"fgsm", "pgd"}
    page = (report / "report.html").read_text()
    assert "Adversarial check" in page and "trained on clean photos only" in page
    assert (report / "adversarial.png").read_bytes()[:4] == b"\x89PNG"


def test_train_adversarial_runs_fgsm_training_in_phase_two(trained, tmp_path: Path) -> None:
    run = tmp_path / "run_adv"
    flags = list(TRAIN_FLAGS)
    flags[flags.index("--epochs-head") + 1] = "1"
    result = run_cli("train", trained["dataset"], "--out", run, *flags, "--adversarial", "2", timeout=900)
    assert result.returncode == 0, result.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["config"]["adversarial"] == 2.0
    history = json.loads((run / "history.json").read_text())
    assert history.get("finetune_loss"), history.keys()
    result = run_cli("train", trained["dataset"], "--out", tmp_path / "bad", *flags, "--adversarial", "40")
    assert_one_line_error(result, "adversarial", code=2)
