"""Transfer learning in two phases: the head on a frozen backbone, then the top layers fine-tuned.

Phase 1 trains only the new classifier head. By default it runs on backbone features computed
once, for each training photo, its mirror image and ``views`` augmented copies: seconds
instead of minutes on a CPU, and the head sees the variety augmentation gives without a
backbone pass per epoch. Phase 2 unfreezes the
top ``unfreeze`` backbone layers (BatchNorm stays in inference mode) and trains at a lower
learning rate on augmented images, with early stopping on the validation loss, a best
checkpoint, ReduceLROnPlateau and TensorBoard logs. A run interrupted in either phase continues
from its last epoch with ``--resume``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..device.core.errors import UsageError
from ..device.core.preprocess import normalise_fit
from .backend import choose_strategy, load_tensorflow
from .config import TrainConfig, from_mapping
from .dataset import Dataset
from .inputs import Progress, RowFile, Rows, augmenter, load_pixels, make_dataset, no_progress, should_stream
from .notify import Say, log_only

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
RUN_CONFIG = "run.json"
STATE_FILE = "state.json"
PHASE1_WEIGHTS = "phase1.weights.h5"
BEST_WEIGHTS = "best.weights.h5"
CACHE_DIR = "cache"  # streamed pixels and features; removed when the run finishes
FEATURE_DIM = 1280  # the widest pooled feature (MobileNetV2 1.0); only sizes the stream decision


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path
    metrics: dict[str, float]
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Arrays:
    """Fitted images (in memory or streamed) and classes of one split; features filled in for phase 1.

    ``features`` holds one row per photo and cached view, view after view, so its targets are
    ``onehot`` repeated ``len(features) // len(self)`` times.
    """

    x: Rows
    y: np.ndarray  # integer class per image
    num_classes: int
    features: Rows | None = None

    @property
    def onehot(self) -> np.ndarray:
        return np.eye(self.num_classes, dtype=np.float32)[self.y]

    def feature_targets(self) -> np.ndarray:
        assert self.features is not None
        return np.tile(self.onehot, (len(self.features) // max(1, len(self)), 1))

    def __len__(self) -> int:
        return len(self.y)


def _verbosity() -> int:
    """Keras' live progress bar on a terminal, one line per epoch in logs and CI."""
    return 1 if sys.stdout.isatty() else 2


def _class_weights(y: np.ndarray, num_classes: int) -> dict[int, float] | None:
    present = np.unique(y)
    if len(present) < 2:
        return None
    from sklearn.utils.class_weight import compute_class_weight

    weights = compute_class_weight("balanced", classes=present, y=y)
    mapping = {int(c): 1.0 for c in range(num_classes)}
    mapping.update({int(c): float(w) for c, w in zip(present, weights)})
    return mapping


def _compile(model: Any, lr: float, cfg: TrainConfig) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )


def _replicas() -> int:
    import tensorflow as tf

    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def global_batch(cfg: TrainConfig) -> int:
    """``batch_size`` per device times the replicas of the strategy in scope (1 outside MirroredStrategy)."""
    import tensorflow as tf

    return cfg.batch_size * tf.distribute.get_strategy().num_replicas_in_sync


def _batch_runner(model: Any) -> Any:
    """``images -> outputs`` through one compiled graph on the default device.

    Not ``predict_on_batch``: under MirroredStrategy it returns every replica's copy of the batch.
    """
    import tensorflow as tf

    run = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
    return lambda images: run(tf.constant(images, tf.float32)).numpy()


def compute_features(
    model: Any,
    x: Rows,
    cfg: TrainConfig | None = None,
    store: Path | None = None,
    progress: Progress | None = None,
) -> Rows:
    """Pooled backbone features of ``x``, one row per photo and view, view after view.

    View 0 is the images as they are. With ``cfg`` (training images) the mirror images follow
    (when ``cfg.flip``) and then ``cfg.views`` passes of the augmentation layers (crop/zoom,
    rotation, contrast, brightness). The head then learns from several versions of each photo
    at the cost of one backbone pass each; validation and test images get view 0 only. Images
    are read and passed a batch at a time, and with ``store`` the features go to that file, so
    neither pixels nor features need to fit in memory.
    """
    from .model import feature_model

    extractor = _batch_runner(feature_model(model))
    augment = augmenter(cfg) if cfg is not None and cfg.augment > 0 else None
    views: list[str] = ["plain"]
    if augment is not None and cfg is not None:
        views += (["mirror"] if cfg.flip else []) + ["augmented"] * cfg.views
    dim = int(feature_model(model).output_shape[-1])
    batch = 64

    def view_rows() -> Iterator[np.ndarray]:
        for view in views:
            for images in x.batches(batch):
                if view == "mirror":
                    images = images[:, :, ::-1]
                elif view == "augmented":
                    images = _augment_batch(augment, images)
                yield extractor(images)

    steps = len(views) * -(-len(x) // batch)
    rows = (progress or no_progress)(view_rows(), steps, "caching features")
    if store is not None:
        table = RowFile(store, len(views) * len(x), (dim,), np.float32)
        table.write((np.asarray(r) for r in rows), fingerprint="features")
        return Rows(table)
    return Rows(np.concatenate([np.asarray(r) for r in rows]) if len(x) else np.zeros((0, dim), np.float32))


def _augment_batch(augment: Any, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    return np.clip(augment(tf.constant(x, tf.float32), training=True).numpy(), 0.0, 255.0)


def _views(features: Rows, photos: int, rows: np.ndarray) -> Rows:
    """The given photos' features in every cached view, view after view (the head's training inputs)."""
    views = len(features) // max(1, photos)
    return features.take((np.arange(views)[:, None] * photos + np.asarray(rows)[None, :]).reshape(-1))


def _set_aside_broken_backup(backup: Path) -> None:
    """A run killed while writing its first checkpoint leaves an unreadable file and no older copy.

    Keras would stop on it; instead the folder is renamed (kept for inspection) and the phase
    starts again from the previous phase's weights.
    """
    latest = backup / "latest.weights.h5"
    if not latest.exists() or (backup / "latest.weights.h5.bkp").exists():
        return
    import h5py

    try:
        with h5py.File(latest, "r"):
            return
    except OSError:
        target = backup.with_name(f"{backup.name}.broken-{int(time.time())}")
        backup.rename(target)
        log.warning("%s: checkpoint unreadable (interrupted while saving); moved to %s, phase restarts", latest, target)


def _callbacks(cfg: TrainConfig, phase: str, run_dir: Path | None, monitor: str, finetune: bool) -> list[Any]:
    import keras

    callbacks: list[Any] = [
        keras.callbacks.EarlyStopping(monitor=monitor, patience=cfg.patience, restore_best_weights=True, verbose=0)
    ]
    if finetune:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, factor=0.3, patience=max(1, cfg.patience // 2), min_lr=1e-7
            )
        )
    if run_dir is not None:
        backup = run_dir / "backup" / phase
        _set_aside_broken_backup(backup)
        callbacks.append(keras.callbacks.BackupAndRestore(str(backup), double_checkpoint=True))
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "logs" / phase), write_graph=False, profile_batch=0))
        if finetune:
            callbacks.append(
                keras.callbacks.ModelCheckpoint(
                    str(run_dir / BEST_WEIGHTS), monitor=monitor, save_best_only=True, save_weights_only=True
                )
            )
    return callbacks


def fit_head(
    model: Any, cfg: TrainConfig, train: Arrays, val: Arrays | None, run_dir: Path | None, verbose: int
) -> dict[str, list[float]]:
    """Phase 1: only the classifier head learns; the backbone is frozen."""
    from .model import head_model, set_trainable

    if cfg.epochs_head == 0:
        return {}
    set_trainable(model, 0)
    monitor = "val_loss" if val is not None and len(val) else "loss"
    weights = _class_weights(train.y, train.num_classes) if cfg.class_weights else None
    if cfg.cache_features:
        head = head_model(model)
        _compile(head, cfg.lr_head, cfg)
        assert train.features is not None
        data = make_dataset(
            train.features,
            train.feature_targets(),
            global_batch(cfg),
            shuffle=True,
            seed=cfg.seed,
            replicas=_replicas(),
        )
        has_val = monitor == "val_loss" and val is not None and val.features is not None
        validation = (
            make_dataset(val.features.take(np.arange(len(val))), val.onehot, global_batch(cfg), replicas=_replicas())
            if has_val and val is not None and val.features is not None
            else None
        )
        history = head.fit(
            data,
            validation_data=validation,
            epochs=cfg.epochs_head,
            shuffle=False,
            class_weight=weights,
            verbose=verbose,
            callbacks=_callbacks(cfg, "head", run_dir, monitor, finetune=False),
        )
    else:
        _compile(model, cfg.lr_head, cfg)
        data, validation = _pixel_datasets(cfg, train, val, monitor)
        history = model.fit(
            data,
            validation_data=validation,
            epochs=cfg.epochs_head,
            class_weight=weights,
            verbose=verbose,
            shuffle=False,
            callbacks=_callbacks(cfg, "head", run_dir, monitor, finetune=False),
        )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def _pixel_datasets(cfg: TrainConfig, train: Arrays, val: Arrays | None, monitor: str) -> tuple[Any, Any]:
    """The shuffled, augmented training batches and (when ``val_loss`` is watched) the validation ones."""
    data = make_dataset(
        train.x,
        train.onehot,
        global_batch(cfg),
        shuffle=True,
        augment=augmenter(cfg),
        seed=cfg.seed,
        replicas=_replicas(),
    )
    validation = (
        make_dataset(val.x, val.onehot, global_batch(cfg), replicas=_replicas())
        if monitor == "val_loss" and val is not None
        else None
    )
    return data, validation


def fine_tune(
    model: Any, cfg: TrainConfig, train: Arrays, val: Arrays | None, run_dir: Path | None, verbose: int
) -> dict[str, list[float]]:
    """Phase 2: the top ``cfg.unfreeze`` backbone layers learn too, at ``cfg.lr_finetune``."""
    from .model import set_trainable

    if cfg.epochs_finetune == 0 or cfg.unfreeze == 0:
        return {}
    set_trainable(model, cfg.unfreeze)
    _compile(model, cfg.lr_finetune, cfg)
    fitted = model  # with --adversarial, a wrapper sharing the weights trains on clean + FGSM batches
    if cfg.adversarial:
        from .adversarial import adversarial_model

        fitted = adversarial_model(model, cfg.adversarial)
        _compile(fitted, cfg.lr_finetune, cfg)
    monitor = "val_loss" if val is not None and len(val) else "loss"
    weights = _class_weights(train.y, train.num_classes) if cfg.class_weights else None
    data, validation = _pixel_datasets(cfg, train, val, monitor)
    before_loss, before_weights = None, None
    if validation is not None:
        before_loss = float(model.evaluate(validation, verbose=0)[0])
        before_weights = model.get_weights()
    history = fitted.fit(
        data,
        validation_data=validation,
        epochs=cfg.epochs_finetune,
        class_weight=weights,
        verbose=verbose,
        shuffle=False,
        callbacks=_callbacks(cfg, "finetune", run_dir, monitor, finetune=True),
    )
    result = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    # On a few hundred photos fine-tuning can overfit from the first epoch; the phase-1 model is
    # then the best checkpoint, so keep it rather than the least-bad fine-tuned epoch.
    losses = result.get("val_loss", [])
    if before_loss is not None and losses and min(losses) >= before_loss:
        model.set_weights(before_weights)
        log.warning(
            "fine-tuning did not lower the validation loss (%.4f -> best %.4f); keeping the phase-1 model",
            before_loss,
            min(losses),
        )
        result["kept_phase1"] = [1.0]
    return result


# The training split's accuracy is a diagnostic (is the model fitting at all?), not a result: past
# this many photos it is measured on a seeded sample, so a 30,000-photo run does not spend a third
# of its time re-classifying its own training photos.
TRAIN_ACCURACY_SAMPLE = 2000


def accuracy(
    model: Any, data: Arrays, progress: Progress | None = None, what: str = "evaluating", sample: int | None = None
) -> float:
    """Top-1 accuracy of the float Keras model on fitted images, read a batch at a time.

    ``sample``: at most this many photos, drawn with a fixed seed and read in file order.
    """
    if not len(data):
        return float("nan")
    if sample is not None and len(data) > sample:
        index = np.sort(np.random.default_rng(0).choice(len(data), sample, replace=False))
        data = dataclasses.replace(data, x=data.x.take(index), y=data.y[index], features=None)
    batches = (progress or no_progress)(data.x.batches(64), -(-len(data) // 64), what)
    run = _batch_runner(model)
    predicted = np.concatenate([np.argmax(run(b), axis=1) for b in batches])
    return float(np.mean(predicted == data.y))


def _check_run_dir(run_dir: Path, resume: bool) -> dict[str, Any]:
    state_path = run_dir / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    if resume and not state:
        raise UsageError(f"{run_dir}: nothing to resume (no {STATE_FILE}); start a run without --resume")
    if not resume and state.get("phase") == "done":
        raise UsageError(f"{run_dir}: already holds a trained model; choose another --out (nothing is overwritten)")
    if not resume and state:
        raise UsageError(f"{run_dir}: holds an unfinished run; add --resume to continue it, or choose another --out")
    if resume and state.get("phase") == "done":
        raise UsageError(f"{run_dir}: this run already finished; nothing to resume")
    return state


def _streams(photos: int, train_photos: int, cfg: TrainConfig, mode: str) -> bool:
    views = 1 + (cfg.flip + cfg.views if cfg.augment > 0 else 0) if cfg.cache_features else 0
    return should_stream(photos, cfg.size, train_photos * views, FEATURE_DIM, mode)


def _load_splits(
    dataset: Dataset, cfg: TrainConfig, n: int, cache: Path | None, progress: Progress | None
) -> tuple[Arrays, Arrays | None, Arrays]:
    """Decode and fit the train, val (None when empty) and test images once, in memory or to ``cache``."""
    fit = normalise_fit(cfg.fit)
    out: dict[str, Arrays | None] = {}
    for split in ("train", "val", "test"):
        paths, y = dataset.subset(split)
        if split == "val" and not paths:
            out[split] = None
            continue
        store = cache / f"{split}-{cfg.size}-{fit}.u8" if cache is not None else None
        out[split] = Arrays(load_pixels(paths, cfg.size, fit, store, progress=progress, what=f"loading {split}"), y, n)
    train_arrays, val_arrays, test_arrays = out["train"], out["val"], out["test"]
    assert train_arrays is not None and test_arrays is not None
    log.info(
        "train %d, val %d, test %d images at %d px (%s)",
        len(train_arrays),
        len(val_arrays) if val_arrays is not None else 0,
        len(test_arrays),
        cfg.size,
        "streamed from disk" if cache is not None else "in memory",
    )
    return train_arrays, val_arrays, test_arrays


def _phase_one(
    model: Any,
    cfg: TrainConfig,
    train: Arrays,
    val: Arrays | None,
    run_dir: Path,
    verbose: int,
    say: Say,
    cache: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, list[float]]:
    """Phase 1 (the head on a frozen backbone), its weights saved so a resume can skip it."""
    if cfg.cache_features and cfg.epochs_head:
        say(f"caching backbone features of {len(train)} training photos in several views")
        train.features = compute_features(
            model, train.x, cfg, cache / "features-train.f32" if cache else None, progress=progress
        )
        if val is not None:
            val.features = compute_features(
                model, val.x, None, cache / "features-val.f32" if cache else None, progress=progress
            )
    say(f"phase 1: head on a frozen {cfg.arch} backbone, {cfg.epochs_head} epoch(s) at most")
    history = {f"head_{k}": v for k, v in fit_head(model, cfg, train, val, run_dir, verbose).items()}
    model.save_weights(run_dir / PHASE1_WEIGHTS)
    return history


def train(
    dataset_dir: str | Path,
    run_dir: str | Path,
    cfg: TrainConfig,
    *,
    resume: bool = False,
    verbose: int | None = None,
    resume_overrides: dict[str, Any] | None = None,
    say: Say | None = None,
    stream: str = "auto",
    strategy: str = "auto",
    progress: Progress | None = None,
) -> TrainResult:
    """Train on the dataset's train split (val for early stopping) and save the run directory.

    With ``resume`` the run's saved settings are used, changed only by ``resume_overrides``.
    ``stream`` (auto|on|off) chooses in-memory or streamed inputs (see ``inputs``);
    ``strategy`` (auto|mirrored|default) the ``tf.distribute`` strategy.

    The model is built (and ImageNet weights fetched) before any photo is read and before the
    run directory exists, so a missing download fails in seconds and leaves nothing behind.

    The run directory gets ``model.keras`` (the best weights), ``run.json`` (config, labels,
    dataset, metrics), ``labels.txt``, ``history.json``, TensorBoard ``logs/`` and checkpoints.
    """
    t0 = time.perf_counter()
    say = say or log_only(log)
    dataset = Dataset.load(dataset_dir)
    run_dir = Path(run_dir)
    state = _check_run_dir(run_dir, resume) if run_dir.exists() or resume else {}
    if resume and state.get("config"):
        # a resumed run keeps its settings; only what the user passes again (e.g. more epochs) changes
        cfg = from_mapping(resume_overrides or {}, "command line", TrainConfig(**state["config"]))
    if not dataset.indices("train"):
        raise UsageError(f"{dataset.root}: the train split is empty")

    _, keras = load_tensorflow()

    from .model import build_model

    verbose = _verbosity() if verbose is None else verbose
    keras.utils.set_random_seed(cfg.seed)
    n = len(dataset.labels)
    distribute = choose_strategy(strategy)
    with distribute.scope():
        model = build_model(cfg, n)  # fails fast (no photo read, no run dir) when weights cannot be had
        if distribute.num_replicas_in_sync > 1:
            say(f"MirroredStrategy on {distribute.num_replicas_in_sync} devices, global batch {global_batch(cfg)}")
        run_dir.mkdir(parents=True, exist_ok=True)
        state = {"phase": "head", "config": cfg.to_dict(), **({k: v for k, v in state.items() if k != "config"})}
        streamed = _streams(len(dataset.indices("all")), len(dataset.indices("train")), cfg, stream)
        cache = run_dir / CACHE_DIR if streamed else None
        train_arrays, val_arrays, test_arrays = _load_splits(dataset, cfg, n, cache, progress)
        (run_dir / STATE_FILE).write_text(json.dumps(state, indent=1))  # only now is there a run to resume
        history: dict[str, list[float]] = {}
        if state["phase"] == "head":
            history.update(_phase_one(model, cfg, train_arrays, val_arrays, run_dir, verbose, say, cache, progress))
            state["phase"] = "finetune"
            state["head_history"] = history
            (run_dir / STATE_FILE).write_text(json.dumps(state, indent=1))
        else:
            model.load_weights(run_dir / PHASE1_WEIGHTS)
            history.update(state.get("head_history", {}))
            log.info("resuming %s in phase 2", run_dir)
        head_accuracy = (
            accuracy(model, val_arrays, progress, "evaluating val") if val_arrays is not None else float("nan")
        )
        say(
            f"phase 2: top {cfg.unfreeze} backbone layers at lr {cfg.lr_finetune:g}, "
            f"{cfg.epochs_finetune} epoch(s) at most"
        )
        history.update(
            {f"finetune_{k}": v for k, v in fine_tune(model, cfg, train_arrays, val_arrays, run_dir, verbose).items()}
        )
        say("evaluating the trained model on train, val and test")
        metrics = {
            "train_accuracy": accuracy(model, train_arrays, progress, "evaluating train", TRAIN_ACCURACY_SAMPLE),
            "val_accuracy_head_only": head_accuracy,
            "val_accuracy": accuracy(model, val_arrays, progress, "evaluating val")
            if val_arrays is not None
            else float("nan"),
            "test_accuracy": accuracy(model, test_arrays, progress, "evaluating test"),
        }
        model.save(run_dir / MODEL_FILE)
    seconds = time.perf_counter() - t0
    _write_run(run_dir, dataset, cfg, metrics, history, seconds)
    state["phase"] = "done"
    (run_dir / STATE_FILE).write_text(json.dumps(state, indent=1))
    _drop_cache(run_dir / CACHE_DIR)
    return TrainResult(run_dir, run_dir / MODEL_FILE, metrics, history, seconds)


def _drop_cache(cache: Path) -> None:
    """The streamed pixels/features are only needed to resume; a finished run does not keep gigabytes."""
    import shutil

    if cache.is_dir():
        shutil.rmtree(cache, ignore_errors=True)


def _write_run(
    run_dir: Path,
    dataset: Dataset,
    cfg: TrainConfig,
    metrics: dict[str, float],
    history: dict[str, list[float]],
    seconds: float,
) -> None:
    import keras
    import tensorflow as tf

    (run_dir / "labels.txt").write_text("".join(f"{label}\n" for label in dataset.labels), encoding="utf-8")
    (run_dir / "history.json").write_text(json.dumps(history, indent=1))
    info = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": str(dataset.root.resolve()),
        "labels": list(dataset.labels),
        "config": cfg.to_dict(),
        "metrics": {k: (None if np.isnan(v) else round(v, 4)) for k, v in metrics.items()},
        "seconds": round(seconds, 1),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    (run_dir / RUN_CONFIG).write_text(json.dumps(info, indent=1))


def _carve_validation(
    train_idx: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training rows into (fit, validation), stratified; no validation if too small."""
    from sklearn.model_selection import train_test_split

    classes = len(np.unique(y[train_idx]))
    if fraction <= 0 or int(len(train_idx) * fraction) < classes:
        return train_idx, train_idx[:0]
    fit, val = train_test_split(train_idx, test_size=fraction, stratify=y[train_idx], random_state=seed)
    return np.sort(fit), np.sort(val)


def kfold(
    dataset_dir: str | Path,
    out_dir: str | Path,
    cfg: TrainConfig,
    k: int,
    verbose: int | None = None,
    val_fraction: float = 0.1,
    say: Say | None = None,
    stream: str = "auto",
    strategy: str = "auto",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Stratified k-fold cross-validation over every sample of the dataset.

    Each fold trains exactly as ``train`` does, with ``val_fraction`` of its training rows as
    the validation split for early stopping, and is scored on its held-out fold. Backbone
    features for phase 1 are computed once for all folds, since the frozen backbone is the
    same in each.
    """
    from sklearn.model_selection import StratifiedKFold

    from .model import build_model

    say = say or log_only(log)
    if k < 2:
        raise UsageError(f"--kfold {k}: needs at least 2 folds")
    if not 0 <= val_fraction < 0.5:
        raise UsageError(f"--kfold-val {val_fraction}: must be in [0, 0.5)")
    dataset = Dataset.load(dataset_dir)
    paths, y = dataset.subset("all")
    smallest = int(np.bincount(y).min())
    if smallest < k:
        raise UsageError(f"--kfold {k}: the smallest class has only {smallest} image(s)")
    out_dir = Path(out_dir)
    _, keras = load_tensorflow()
    verbose = 0 if verbose is None else verbose
    t0 = time.perf_counter()
    n = len(dataset.labels)
    distribute = choose_strategy(strategy)
    keras.utils.set_random_seed(cfg.seed)
    with distribute.scope():
        first = build_model(cfg, n)  # before any photo or folder: fails fast without the weights
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = out_dir / CACHE_DIR if _streams(len(paths), len(paths), cfg, stream) else None
    fit = normalise_fit(cfg.fit)
    x = load_pixels(paths, cfg.size, fit, cache / f"all-{cfg.size}-{fit}.u8" if cache else None, progress=progress)
    features = None
    if cfg.cache_features:
        say(f"caching backbone features of {len(paths)} photos in several views")
        with distribute.scope():
            features = compute_features(first, x, cfg, cache / "features-all.f32" if cache else None, progress=progress)
    folds = []
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=cfg.seed)
    for fold, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(len(y)), y), start=1):
        keras.backend.clear_session()
        keras.utils.set_random_seed(cfg.seed + fold)
        rows = _carve_validation(train_idx, y, val_fraction, cfg.seed + fold)
        with distribute.scope():
            result = _run_fold(cfg, x, y, features, (*rows, test_idx), n, verbose)
        folds.append({"fold": fold, **result})
        say(
            f"fold {fold}/{k}: accuracy {result['accuracy']:.3f} (head only {result['head_only_accuracy']:.3f}) "
            f"on {len(test_idx)} held-out images"
        )
    accs = np.array([f["accuracy"] for f in folds])
    heads = np.array([f["head_only_accuracy"] for f in folds])
    summary = {
        "k": k,
        "mean_accuracy": round(float(accs.mean()), 4),
        "std_accuracy": round(float(accs.std()), 4),
        "head_only_mean_accuracy": round(float(heads.mean()), 4),
        "head_only_std_accuracy": round(float(heads.std()), 4),
        "val_fraction": val_fraction,
        "folds": folds,
        "config": cfg.to_dict(),
        "dataset": str(dataset.root.resolve()),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    _write_kfold(out_dir, summary)
    _drop_cache(out_dir / CACHE_DIR)
    return summary


def _run_fold(
    cfg: TrainConfig,
    x: Rows,
    y: np.ndarray,
    features: Rows | None,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    n: int,
    verbose: int,
) -> dict[str, Any]:
    """Train one fold on its (fit, val) rows as ``train`` does and score it on its held-out rows."""
    from .model import build_model

    fit_idx, val_idx, test_idx = rows
    model = build_model(cfg, n)
    train = Arrays(x.take(fit_idx), y[fit_idx], n)
    val = Arrays(x.take(val_idx), y[val_idx], n) if len(val_idx) else None
    if features is not None:
        train.features = _views(features, len(x), fit_idx)
        if val is not None:
            val.features = features.take(val_idx)  # view 0
    held_out = Arrays(x.take(test_idx), y[test_idx], n)
    fit_head(model, cfg, train, val, None, verbose)
    head_acc = accuracy(model, held_out)
    fine_tune(model, cfg, train, val, None, verbose)
    acc = accuracy(model, held_out)
    return {
        "train": len(fit_idx),
        "val": len(val_idx),
        "test": len(test_idx),
        "head_only_accuracy": round(head_acc, 4),
        "accuracy": round(acc, 4),
    }


def _write_kfold(out_dir: Path, summary: dict[str, Any]) -> None:
    folds = summary["folds"]
    (out_dir / "kfold.json").write_text(json.dumps(summary, indent=1))
    with (out_dir / "kfold.csv").open("w", encoding="utf-8") as handle:
        handle.write("fold,train,val,test,head_only_accuracy,accuracy\n")
        handle.writelines(
            f"{f['fold']},{f['train']},{f['val']},{f['test']},{f['head_only_accuracy']},{f['accuracy']}\n"
            for f in folds
        )
