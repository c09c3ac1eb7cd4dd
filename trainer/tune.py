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


# --- latency-budgeted search (``tune --budget-ms``) -------------------------------------------

BUDGET_BACKBONES: list[tuple[str, float]] = [
    ("mobilenet_v2", 0.35),
    ("mobilenet_v2", 0.5),
    ("mobilenet_v2", 0.75),
    ("mobilenet_v2", 1.0),
    ("mobilenet_v3_small", 1.0),
    ("mobilenet_v3_large", 1.0),
]
BUDGET_SIZES = [96, 128, 160, 192, 224]
BUDGET_HEADS: list[dict[str, float]] = [
    {"dropout": 0.2, "lr_head": 1e-3},
    {"dropout": 0.5, "lr_head": 3e-3},
]
HOPELESS_MARGIN = 0.15  # a head this far below the best so far after 2 epochs stops early
CALIBRATION_IMAGES = 8  # int8 calibration for timing only needs the ranges roughly right


@dataclass
class Candidate:
    """One point of the latency-budgeted search: a backbone at a size with one head setting."""

    arch: str
    alpha: float
    size: int
    head: dict[str, float]
    weights: str = ""
    measured_ms: float = float("nan")
    estimated_ms: float = float("nan")
    model_kb: float = float("nan")
    val_accuracy: float = float("nan")
    status: str = "not tried"
    pareto: bool = False

    def label(self) -> str:
        return f"{self.arch} {self.alpha:g} @{self.size}"


def budget_space(space_file: str | Path | None) -> tuple[list[tuple[str, float]], list[int], list[dict[str, float]]]:
    """Backbones, sizes and head settings to search; a ``--space`` TOML may narrow any of them.

    Keys: ``arch`` and ``alpha`` (lists; every valid pair is tried), ``size``, ``dropout``, ``lr_head``.
    """
    if space_file is None:
        return BUDGET_BACKBONES, BUDGET_SIZES, BUDGET_HEADS
    from .config import ALPHAS

    data = read_toml(Path(space_file), "search-space file")
    space = data.get("space", data)
    unknown = set(space) - {"arch", "alpha", "size", "dropout", "lr_head"}
    if unknown:
        raise ConfigError(
            f"{space_file}: with --budget-ms the space takes arch, alpha, size, dropout, lr_head; "
            f"not {', '.join(sorted(unknown))}"
        )
    for key, values in space.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{space_file}: key {key!r} must be a non-empty list of values")
        for value in values:
            from_mapping({key: value}, str(space_file))
    archs = space.get("arch", sorted({a for a, _ in BUDGET_BACKBONES}))
    alphas = space.get("alpha")
    backbones = [
        (a, float(w))
        for a in archs
        for w in (alphas or [w for b, w in BUDGET_BACKBONES if b == a])
        if float(w) in ALPHAS[a]
    ]
    if not backbones:
        raise ConfigError(f"{space_file}: no arch/alpha pair in the space is a valid backbone")
    heads = [
        {"dropout": float(d), "lr_head": float(lr)}
        for d in space.get("dropout", [h["dropout"] for h in BUDGET_HEADS[:1]])
        for lr in space.get("lr_head", [h["lr_head"] for h in BUDGET_HEADS[:1]])
    ]
    return backbones, [int(s) for s in space.get("size", BUDGET_SIZES)], heads


def _weights_for(base: TrainConfig, arch: str, alpha: float) -> str:
    """The base's weights where they fit this backbone; random init otherwise (the table says so).

    A local weights file holds one arch and width (its convolutions load at any input size).
    """
    if base.weights in ("imagenet", "none") or (arch == base.arch and alpha == base.alpha):
        return base.weights
    return "none"


def _hopeless_stop(best: float) -> Any:
    import keras

    class Hopeless(keras.callbacks.Callback):
        """Stop a head that, after 2 epochs, is far below the best head found so far."""

        stopped = False

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            acc = (logs or {}).get("val_accuracy")
            if epoch >= 1 and acc is not None and best > 0 and acc < best - HOPELESS_MARGIN:
                self.stopped = True
                self.model.stop_training = True

    return Hopeless()


def _train_head(
    features: Any,
    targets: np.ndarray,
    val_features: Any,
    val_targets: np.ndarray,
    head: dict[str, float],
    cfg: TrainConfig,
    best: float,
) -> tuple[float, bool]:
    """A short training of the classifier head on cached features -> (best val accuracy, stopped early)."""
    import keras

    from .inputs import make_dataset

    classes = targets.shape[1]
    model = keras.Sequential(
        [
            keras.Input(features.row_shape),
            keras.layers.Dropout(head["dropout"], seed=cfg.seed),
            keras.layers.Dense(
                classes, activation="softmax", kernel_regularizer=keras.regularizers.L2(cfg.l2) if cfg.l2 else None
            ),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(head["lr_head"]), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    hopeless = _hopeless_stop(best)
    history = model.fit(
        make_dataset(features, targets, cfg.batch_size, shuffle=True, seed=cfg.seed),
        validation_data=make_dataset(val_features, val_targets, cfg.batch_size),
        epochs=max(1, min(cfg.epochs_head, 10)),
        shuffle=False,  # the dataset shuffles itself
        verbose=0,
        callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=3), hopeless],
    )
    return float(max(history.history.get("val_accuracy", [float("nan")]))), hopeless.stopped


def pareto_front(found: list[Candidate]) -> list[Candidate]:
    """Fitting candidates no other fitting one beats on accuracy, estimated ms and size at once."""
    fits = [c for c in found if c.status == "fits" and not math.isnan(c.val_accuracy)]

    def dominates(a: Candidate, b: Candidate) -> bool:
        no_worse = a.val_accuracy >= b.val_accuracy and a.estimated_ms <= b.estimated_ms and a.model_kb <= b.model_kb
        better = a.val_accuracy > b.val_accuracy or a.estimated_ms < b.estimated_ms or a.model_kb < b.model_kb
        return no_worse and better

    front = [c for c in fits if not any(dominates(o, c) for o in fits if o is not c)]
    return sorted(front, key=lambda c: (-c.val_accuracy, c.estimated_ms))


def tune_budget(
    dataset_dir: str | Path,
    out_dir: str | Path,
    base: TrainConfig,
    *,
    budget_ms: float,
    target: str = "this",
    minutes: float | None = None,
    space_file: str | Path | None = None,
    say: Say | None = None,
    progress: Any = None,
    verbose: bool = False,
) -> list[Candidate]:
    """Search backbones x sizes x heads for the most accurate int8 model within ``budget_ms`` on ``target``.

    Latency is measured first (it does not depend on the head), so a backbone over the budget
    is never trained. Accuracy is the best val accuracy of a short head training on cached
    backbone features (view 0 and the mirror image). Writes ``tune.csv``, ``pareto.png``,
    ``best.toml``/``best.json``; raises ``EdgesightError`` (exit 1) when nothing fits.
    """
    from ..device.core.errors import EdgesightError
    from ..device.core.preprocess import normalise_fit
    from .budget import TARGETS, invoke_ms, reference_ms_here, scale, tflite_int8
    from .dataset import Dataset
    from .inputs import load_pixels
    from .model import build_model
    from .train import compute_features

    say = say or log_only(log)
    if target not in TARGETS:
        raise UsageError(f"--target {target!r}: use {', '.join(TARGETS)}")
    if not budget_ms > 0:
        raise UsageError(f"--budget-ms {budget_ms}: must be above 0")
    dataset = Dataset.load(dataset_dir)
    if not dataset.indices("val"):
        raise UsageError(f"{dataset.root}: the val split is empty; tuning needs it to compare candidates")
    backbones, sizes, heads = budget_space(space_file)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _, keras = load_tensorflow()
    started = time.monotonic()
    spec = TARGETS[target]
    reference = None
    if spec.reference_ms is not None:
        say("timing the reference model (MobileNetV2 1.0, 224 px) here to scale to " + target)
        reference = reference_ms_here()
        say(f"  {reference:.1f} ms here vs {spec.reference_ms:g} ms published for {target} ({spec.source})")
    fit = normalise_fit(base.fit)
    train_paths, y_train = dataset.subset("train")
    val_paths, y_val = dataset.subset("val")
    classes = len(dataset.labels)
    eye = np.eye(classes, dtype=np.float32)
    found: list[Candidate] = []
    best = 0.0
    plan = [(arch, alpha, size) for size in sorted(sizes) for arch, alpha in backbones]
    for number, (arch, alpha, size) in enumerate(plan, start=1):
        group = [Candidate(arch, alpha, size, dict(h)) for h in heads]
        found.extend(group)
        if minutes is not None and time.monotonic() - started > minutes * 60:
            for c in group:
                c.status = "not tried (--minutes spent)"
            continue
        weights = _weights_for(base, arch, alpha)
        cfg = from_mapping(
            {"arch": arch, "alpha": alpha, "size": size, "weights": weights, "views": 0}, "candidate", base
        )
        say(f"candidate {number}/{len(plan)}: {arch} alpha {alpha:g} at {size} px (weights: {weights})")
        keras.backend.clear_session()
        try:
            model = build_model(cfg, classes)
            calibration = load_pixels(train_paths[:CALIBRATION_IMAGES], size, fit, None).array()
            blob = tflite_int8(model, calibration, verbose)
            measured = invoke_ms(blob)
        except EdgesightError:
            raise
        except Exception as exc:  # noqa: BLE001 - one failing backbone must not lose the rest
            for c in group:
                c.status = f"failed: {type(exc).__name__}: {exc}"[:120]
            continue
        estimated = scale(measured, spec, reference)
        for c in group:
            c.weights, c.measured_ms, c.estimated_ms, c.model_kb = weights, measured, estimated, len(blob) / 1024
        say(f"  int8 {len(blob) / 1024:.0f} KB, {measured:.2f} ms here, ~{estimated:.2f} ms on {target} (estimate)")
        if estimated > budget_ms:
            for c in group:
                c.status = "over budget"
            write_budget_results(out_dir, found, budget_ms, target, base)
            continue
        pixels = load_pixels(train_paths, size, fit, None, progress=progress, what="loading photos")
        val_pixels = load_pixels(val_paths, size, fit, None, progress=progress, what="loading val")
        feats = compute_features(model, pixels, cfg, progress=progress)
        val_feats = compute_features(model, val_pixels, None, progress=progress)
        targets = np.tile(eye[y_train], (len(feats) // len(pixels), 1))
        for c in group:
            acc, stopped = _train_head(feats, targets, val_feats, eye[y_val], c.head, cfg, best)
            c.val_accuracy, c.status = acc, "stopped early (hopeless)" if stopped else "fits"
            best = max(best, acc)
            say(f"  head dropout {c.head['dropout']:g}, lr {c.head['lr_head']:g}: val accuracy {acc:.3f}")
        write_budget_results(out_dir, found, budget_ms, target, base)
    write_budget_results(out_dir, found, budget_ms, target, base)
    front = pareto_front(found)
    if not front:
        timed = [c for c in found if not math.isnan(c.estimated_ms)]
        fastest = min(timed, key=lambda c: c.estimated_ms) if timed else None
        hint = f"; the fastest, {fastest.label()}, is ~{fastest.estimated_ms:.2f} ms (estimate)" if fastest else ""
        raise EdgesightError(
            f"no candidate fits {budget_ms:g} ms on {target}{hint}; raise --budget-ms or add smaller sizes "
            f"(wrote {out_dir / 'tune.csv'})"
        )
    return front


BUDGET_COLUMNS = [
    "arch",
    "alpha",
    "size",
    "dropout",
    "lr_head",
    "weights",
    "val_accuracy",
    "measured_ms_here",
    "estimated_ms_target",
    "int8_kb",
    "status",
    "pareto",
]


def write_budget_results(
    out_dir: Path, found: list[Candidate], budget_ms: float, target: str, base: TrainConfig
) -> None:
    """``tune.csv`` (every candidate), ``pareto.png``, and ``best.toml`` for the best fitting candidate."""
    front = pareto_front(found)
    on_front = {id(c) for c in front}
    for c in found:
        c.pareto = id(c) in on_front
    with (out_dir / "tune.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(BUDGET_COLUMNS)
        for c in found:
            writer.writerow(
                [
                    c.arch,
                    c.alpha,
                    c.size,
                    c.head["dropout"],
                    c.head["lr_head"],
                    c.weights,
                    round(c.val_accuracy, 4),
                    round(c.measured_ms, 3),
                    round(c.estimated_ms, 3),
                    round(c.model_kb, 1),
                    c.status,
                    int(c.pareto),
                ]
            )
    _plot(out_dir / "pareto.png", found, budget_ms, target)
    if not front:
        return
    best = front[0]
    config = from_mapping(
        {
            "arch": best.arch,
            "alpha": best.alpha,
            "size": best.size,
            "weights": best.weights or base.weights,
            **best.head,
        },
        "best candidate",
        base,
    ).to_dict()
    header = (
        f"# most accurate candidate within {budget_ms:g} ms on {target} (estimated): {best.label()}, "
        f"val accuracy {best.val_accuracy:.4f} from a short head training, ~{best.estimated_ms:.2f} ms\n"
        f"# retrain with: edgesight train DATASET_DIR --out RUN_DIR --config {out_dir / 'best.toml'}\n"
    )
    (out_dir / "best.toml").write_text(header + dump_toml(config), encoding="utf-8")
    (out_dir / "best.json").write_text(
        json.dumps(
            {
                "budget_ms": budget_ms,
                "target": target,
                "estimated_ms": best.estimated_ms,
                "measured_ms_here": best.measured_ms,
                "val_accuracy": best.val_accuracy,
                "config": config,
            },
            indent=1,
        ),
        encoding="utf-8",
    )


def _plot(path: Path, found: list[Candidate], budget_ms: float, target: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [c for c in found if not math.isnan(c.val_accuracy)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if trained:
        ax.scatter(
            [c.estimated_ms for c in trained],
            [c.val_accuracy for c in trained],
            s=[max(10.0, c.model_kb / 20) for c in trained],
            alpha=0.5,
            label="candidates (size ~ int8 KB)",
        )
        front = sorted((c for c in trained if c.pareto), key=lambda c: c.estimated_ms)
        if front:
            ax.plot([c.estimated_ms for c in front], [c.val_accuracy for c in front], "r-o", label="Pareto front")
            for c in front:
                ax.annotate(c.label(), (c.estimated_ms, c.val_accuracy), fontsize=7)
    ax.axvline(budget_ms, color="grey", linestyle="--", label=f"budget {budget_ms:g} ms")
    ax.set_xlabel(f"estimated int8 latency on {target} (ms)")
    ax.set_ylabel("val accuracy (short head training)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
