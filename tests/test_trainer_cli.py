"""Trainer verbs on bad input (one line, exit code), config files, the tuner, and resuming a run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tomllib
from conftest import assert_one_line_error, run_cli
from trainer_images import write_shapes

from edgesight.device.core.errors import ConfigError
from edgesight.trainer.config import TrainConfig, dump_toml, from_mapping, load
from edgesight.trainer.dataset import Dataset, import_dataset
from edgesight.trainer.tune import candidates

TINY = ("--alpha", "0.35", "--size", "96", "--weights", "none", "--batch-size", "16")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    import_dataset(write_shapes(root / "shapes", per_class=10, seed=5, size=96), root / "dataset")
    return root / "dataset"


def test_train_refuses_missing_and_empty_datasets(tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli("train", tmp_path / "nowhere", "--out", tmp_path / "run"), "nowhere", "no such dataset folder", code=2
    )
    (tmp_path / "empty").mkdir()
    assert_one_line_error(
        run_cli("train", tmp_path / "empty", "--out", tmp_path / "run"), "dataset.json", "data import", code=2
    )
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "dataset.json").write_text('{"labels": ["a"], "samples": []}')
    assert_one_line_error(run_cli("train", tmp_path / "bad", "--out", tmp_path / "run"), "no samples", code=2)
    assert not (tmp_path / "run").exists()


def test_train_refuses_bad_weights_and_settings(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert_one_line_error(
        run_cli("train", dataset, "--out", out, "--weights", tmp_path / "missing.h5"), "weights", "missing.h5", code=2
    )
    assert_one_line_error(run_cli("train", dataset, "--out", out, "--alpha", "0.6"), "alpha", "0.35", code=2)
    assert_one_line_error(run_cli("train", dataset, "--out", out, "--size", "300"), "size", "96", code=2)
    assert_one_line_error(run_cli("train", dataset, "--out", out, "--resume"), "nothing to resume", code=2)
    not_weights = tmp_path / "junk.weights.h5"
    not_weights.write_text("not an HDF5 file")
    result = run_cli("train", dataset, "--out", out, *TINY[:4], "--weights", not_weights, timeout=300)
    assert_one_line_error(result, "junk.weights.h5", "does not load", code=1)


def test_train_refuses_bad_config_files(dataset: Path, tmp_path: Path) -> None:
    cases = {
        "unknown.toml": ("learning_rate = 0.1\n", "unknown key 'learning_rate'"),
        "type.toml": ('epochs_head = "ten"\n', "'epochs_head' must be int"),
        "range.toml": ("dropout = 1.5\n", "dropout"),
        "syntax.toml": ("alpha = = 1\n", "not valid TOML"),
    }
    for name, (text, fragment) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        assert_one_line_error(
            run_cli("train", dataset, "--out", tmp_path / "run", "--config", path), name, fragment, code=2
        )
    assert_one_line_error(
        run_cli("train", dataset, "--out", tmp_path / "run", "--config", tmp_path / "no.toml"),
        "no.toml",
        "no such config file",
        code=2,
    )


def test_config_file_and_flags_layer_over_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[train]\nalpha = 0.5\nsize = 128\nflip = false\nfit = "center"\n')
    cfg = load(path)
    assert (cfg.alpha, cfg.size, cfg.flip, cfg.fit, cfg.epochs_head) == (0.5, 128, False, "centre", 15)
    assert from_mapping({"size": 96}, "flags", cfg).size == 96
    round_trip = tomllib.loads(dump_toml(cfg.to_dict()))
    assert TrainConfig(**round_trip) == cfg
    with pytest.raises(ConfigError, match="arch"):
        from_mapping({"arch": "resnet50"}, "x")


def test_search_candidates_are_seeded_and_distinct() -> None:
    space = {"dropout": [0.1, 0.2], "size": [96, 128, 160]}
    grid = candidates(space, "grid", seed=0, limit=100)
    assert len(grid) == 6 and len({tuple(sorted(p.items())) for p in grid}) == 6
    first, again = candidates(space, "random", 3, 4), candidates(space, "random", 3, 4)
    assert first == again and len({tuple(sorted(p.items())) for p in first}) == 4
    assert len(candidates(space, "random", 3, 50)) == 6  # never more than the space holds


@pytest.mark.slow
def test_tune_writes_ranked_csv_and_a_best_config_train_accepts(dataset: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text("lr_head = [0.0001, 0.01]\ndropout = [0.1, 0.4]\n")
    out = tmp_path / "tune"
    result = run_cli(
        "tune",
        dataset,
        "--out",
        out,
        "--space",
        space,
        "--trials",
        "2",
        *TINY,
        "--epochs-head",
        "2",
        "--epochs-finetune",
        "0",
        timeout=400,
    )
    assert result.returncode == 0, result.stderr
    assert "rank" in result.stdout and "best.toml" in result.stdout
    with (out / "tune.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["rank"]) for r in rows] == [1, 2]
    assert float(rows[0]["val_accuracy"]) >= float(rows[1]["val_accuracy"])
    best = load(out / "best.toml")
    assert best.lr_head == float(rows[0]["lr_head"]) and best.dropout == float(rows[0]["dropout"])
    assert best.size == 96 and best.weights == "none"
    assert (Path(rows[0]["run_dir"]) / "model.keras").is_file()  # the winning trial is exportable as is
    bad = tmp_path / "badspace.toml"
    bad.write_text("colour = [1, 2]\n")
    assert_one_line_error(run_cli("tune", dataset, "--out", out, "--space", bad), "unknown key 'colour'", code=2)


@pytest.mark.slow
def test_interrupted_run_resumes_from_its_checkpoint(dataset: Path, tmp_path: Path) -> None:
    """Kill a run once phase 1 is saved, then --resume finishes it without redoing phase 1."""
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "edgesight.device.cli",
        "train",
        str(dataset),
        "--out",
        str(out),
        *TINY,
        "--epochs-head",
        "2",
        "--epochs-finetune",
        "40",
        "--patience",
        "40",
        "--unfreeze",
        "5",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (out / "backup" / "finetune" / "training_metadata.json").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "phase 2 never started"
            time.sleep(0.5)
        assert proc.poll() is None, "the run finished before it could be interrupted"
    finally:
        proc.kill()
        proc.wait()
    state = json.loads((out / "state.json").read_text())
    assert state["phase"] == "finetune" and (out / "phase1.weights.h5").is_file()
    assert_one_line_error(run_cli("train", dataset, "--out", out, *TINY), "unfinished run", "--resume", code=2)
    result = run_cli("train", dataset, "--out", out, "--resume", "--epochs-finetune", "1", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "phase 1" not in result.stdout and "phase 2" in result.stdout
    assert json.loads((out / "state.json").read_text())["phase"] == "done"
    assert len(json.loads((out / "history.json").read_text())["head_loss"]) == 2


@pytest.mark.slow
def test_kfold_reports_mean_and_std_over_folds(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "kfold"
    result = run_cli(
        "train",
        dataset,
        "--out",
        out,
        "--kfold",
        "3",
        *TINY,
        "--epochs-head",
        "2",
        "--epochs-finetune",
        "1",
        "--unfreeze",
        "5",
        timeout=400,
    )
    assert result.returncode == 0, result.stderr
    assert "3-fold accuracy" in result.stdout and "+/-" in result.stdout
    summary = json.loads((out / "kfold.json").read_text())
    assert summary["k"] == 3 and len(summary["folds"]) == 3
    total = len(Dataset.load(dataset).paths)
    assert sum(f["test"] for f in summary["folds"]) == total  # every image held out exactly once
    accs = [f["accuracy"] for f in summary["folds"]]
    assert summary["mean_accuracy"] == pytest.approx(sum(accs) / 3, abs=1e-3)
    assert (out / "kfold.csv").read_text().startswith("fold,train,val,test")
    assert_one_line_error(run_cli("train", dataset, "--out", out, "--kfold", "11", *TINY), "smallest class", code=2)


def test_train_accuracy_of_a_large_split_is_measured_on_a_seeded_sample() -> None:
    """Past TRAIN_ACCURACY_SAMPLE photos the training split's accuracy is a sample's, exactly."""
    from edgesight.trainer.backend import load_tensorflow
    from edgesight.trainer.inputs import Rows
    from edgesight.trainer.train import Arrays, accuracy

    _, keras = load_tensorflow()
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    model.layers[-1].set_weights([np.array([[-1.0, 1.0]] * 3), np.array([0.0, -1.5])])  # bright -> 1, dark -> 0
    images = np.concatenate([np.ones((20, 4, 4, 3)), np.zeros((20, 4, 4, 3))]).astype(np.float32)
    labels = np.array([1] * 20 + [0] * 10 + [1] * 10)  # the last ten are labelled wrong
    data = Arrays(Rows(images), labels, 2)
    assert accuracy(model, data) == 0.75 and accuracy(model, data, sample=40) == 0.75
    picked = np.sort(np.random.default_rng(0).choice(40, 10, replace=False))
    assert accuracy(model, data, sample=10) == float(np.mean(picked < 30))
