"""Hyperparameter search: random or grid over a small space, within a budget of trials or minutes.

Each trial is an ordinary training run (``OUT/trials/NNN``) scored on the validation split, so
the winner can be exported as it is, and ``OUT/best.toml`` retrains it with ``train --config``.
The test split is never used to choose.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..device.core.errors import ConfigError, UsageError
from ..device.core.tomlfile import read_toml
from .backend import load_tensorflow
from .config import TrainConfig, dump_toml, from_mapping
from .notify import Say, log_only

log = logging.getLogger(__name__)

DEFAULT_SPACE: dict[str, list[Any]] = {
    "lr_finetune": [1e-5, 3e-5, 1e-4, 3e-4],
    "lr_head": [3e-4, 1e-3, 3e-3],
    "alpha": [0.35, 0.5, 0.75, 1.0],
    "size": [96, 128, 160, 192, 224],
    "augment": [0.0, 0.5, 1.0, 1.5],
    "dropout": [0.1, 0.2, 0.3, 0.5],
}


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    val_accuracy: float = float("nan")
    val_loss: float = float("nan")
    seconds: float = 0.0
    run_dir: str = ""
    error: str = ""

    def rank_key(self) -> tuple[float, float]:
        """Best first: higher val accuracy, then lower val loss; failed trials last."""
        acc = -1.0 if math.isnan(self.val_accuracy) else self.val_accuracy
        loss = math.inf if math.isnan(self.val_loss) else self.val_loss
        return (-acc, loss)


def load_space(path: str | Path | None, base: TrainConfig) -> dict[str, list[Any]]:
    """The search space: a TOML of ``key = [values]`` (checked against the config keys) or the default.

    With a local weights file the width cannot change (the file fits one alpha), so alpha is
    taken out of the default space.
    """
    if path is None:
        space = dict(DEFAULT_SPACE)
        if base.weights not in ("imagenet", "none") or base.arch != "mobilenet_v2":
            space.pop("alpha")
        return space
    data = read_toml(Path(path), "search-space file")
    space = data.get("space", data)
    for key, values in space.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: key {key!r} must be a non-empty list of values")
        for value in values:
            from_mapping({key: value}, str(path), base)  # names the key if unknown or out of range
    return space


def candidates(space: dict[str, list[Any]], method: str, seed: int, limit: int) -> list[dict[str, Any]]:
    """Parameter sets to try, in order: every grid point (seeded order) or distinct random draws."""
    keys = sorted(space)
    if method == "grid":
        grid = [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]
        order = np.random.default_rng(seed).permutation(len(grid))
        return [grid[i] for i in order[:limit]]
    if method != "random":
        raise UsageError(f"--method {method!r}: use random or grid")
    rng = np.random.default_rng(seed)
    total = math.prod(len(space[k]) for k in keys)
    picked: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    while len(picked) < min(limit, total):
        params = {k: space[k][int(rng.integers(len(space[k])))] for k in keys}
        signature = tuple(params[k] for k in keys)
        if signature not in seen:
            seen.add(signature)
            picked.append(params)
    return picked


def _val_loss(history: dict[str, list[float]]) -> float:
    losses = history.get("finetune_val_loss") or history.get("head_val_loss") or []
    return float(min(losses)) if losses else float("nan")


def tune(
    dataset_dir: str | Path,
    out_dir: str | Path,
    base: TrainConfig,
    *,
    method: str = "random",
    trials: int = 10,
    minutes: float | None = None,
    space_file: str | Path | None = None,
    say: Say | None = None,
) -> list[Trial]:
    """Run trials until the budget is spent; write ``tune.csv`` (best first) and ``best.toml``."""
    from .dataset import Dataset
    from .train import train

    say = say or log_only(log)
    if trials < 1:
        raise UsageError("--trials must be at least 1")
    dataset = Dataset.load(dataset_dir)
    if not dataset.indices("val"):
        raise UsageError(f"{dataset.root}: the val split is empty; tuning needs it to compare trials")
    space = load_space(space_file, base)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = candidates(space, method, base.seed, trials)
    started = time.monotonic()
    results: list[Trial] = []
    for number, params in enumerate(plan, start=1):
        if minutes is not None and time.monotonic() - started > minutes * 60:
            log.info("time budget of %g min spent after %d trial(s)", minutes, len(results))
            break
        trial = Trial(number, params, run_dir=str(out_dir / "trials" / f"{number:03d}"))
        say(f"trial {number}/{len(plan)}: " + ", ".join(f"{k}={v}" for k, v in params.items()))
        t0 = time.monotonic()
        try:
            _, keras = load_tensorflow()
            keras.backend.clear_session()
            cfg = from_mapping(params, "search space", base)
            result = train(dataset_dir, trial.run_dir, cfg, verbose=0, say=say)
            trial.val_accuracy = result.metrics["val_accuracy"]
            trial.val_loss = _val_loss(result.history)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - one failed trial must not lose the others
            trial.error = f"{type(exc).__name__}: {exc}"[:200]
            log.warning("trial %d failed: %s", number, trial.error)
        trial.seconds = round(time.monotonic() - t0, 1)
        results.append(trial)
        say(f"  val accuracy {trial.val_accuracy:.3f}, val loss {trial.val_loss:.3f} in {trial.seconds:.0f} s")
        write_results(out_dir, results, list(space), base)
    return sorted(results, key=Trial.rank_key)


def write_results(out_dir: Path, results: list[Trial], keys: list[str], base: TrainConfig) -> None:
    """``tune.csv`` best first, and ``best.toml``: the base config with the best trial's values."""
    ranked = sorted(results, key=Trial.rank_key)
    with (out_dir / "tune.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "trial", *keys, "val_accuracy", "val_loss", "seconds", "run_dir", "error"])
        for rank, t in enumerate(ranked, start=1):
            writer.writerow(
                [
                    rank,
                    t.number,
                    *(t.params.get(k) for k in keys),
                    round(t.val_accuracy, 4),
                    round(t.val_loss, 4),
                    t.seconds,
                    t.run_dir,
                    t.error,
                ]
            )
    best = ranked[0]
    if not best.error:
        config = from_mapping(best.params, "best trial", base).to_dict()
        header = (
            f"# best of {len(results)} trial(s): trial {best.number}, val accuracy {best.val_accuracy:.4f}\n"
            f"# retrain with: edgesight train DATASET_DIR --out RUN_DIR --config {out_dir / 'best.toml'}\n"
        )
        (out_dir / "best.toml").write_text(header + dump_toml(config), encoding="utf-8")
        (out_dir / "best.json").write_text(
            json.dumps(
                {
                    "trial": best.number,
                    "run_dir": best.run_dir,
                    "val_accuracy": best.val_accuracy,
                    "params": best.params,
                },
                indent=1,
            ),
            encoding="utf-8",
        )
