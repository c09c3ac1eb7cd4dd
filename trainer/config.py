"""Training hyperparameters in one place: defaults, TOML loading and validation that names the key.

``train --config FILE`` reads a TOML file of these keys (``tune`` writes one for its best
trial); command-line flags override the file. Everything is checked before TensorFlow is
imported, so a typo costs a second, not a minute of start-up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..device.core.errors import ConfigError
from ..device.core.preprocess import normalise_fit
from ..device.core.tomlfile import read_toml

ARCHS = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
ALPHAS = {
    "mobilenet_v2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
    "mobilenet_v3_small": (0.75, 1.0),
    "mobilenet_v3_large": (0.75, 1.0),
}
MIN_SIZE, MAX_SIZE = 96, 224


@dataclass
class TrainConfig:
    """Every knob of a training run; the defaults suit a few hundred photos on a laptop CPU."""

    arch: str = "mobilenet_v2"
    alpha: float = 1.0
    size: int = 160
    fit: str = "centre"
    weights: str = "imagenet"  # imagenet | none | path to a .h5/.weights.h5/.keras file
    epochs_head: int = 15  # phase 1: classifier head on a frozen backbone
    epochs_finetune: int = 12  # phase 2: top layers unfrozen
    unfreeze: int = 30  # backbone layers (counted from the top) trained in phase 2
    lr_head: float = 1e-3
    lr_finetune: float = 1e-5  # as in the Keras/TF transfer-learning guides; 1e-4 overfitted flowers5
    batch_size: int = 32
    dropout: float = 0.2
    l2: float = 1e-4
    label_smoothing: float = 0.0
    augment: float = 1.0  # multiplies rotation/zoom/contrast/brightness; 0 turns augmentation off
    flip: bool = True
    rotation: float = 0.05  # fraction of a full turn
    zoom: float = 0.15
    contrast: float = 0.2
    brightness: float = 0.2
    class_weights: bool = True
    patience: int = 5
    cache_features: bool = True  # phase 1 on backbone features computed once (fast)
    views: int = 6  # augmented copies of each training photo whose features phase 1 caches (besides its mirror)
    seed: int = 0
    adversarial: float = 0.0  # FGSM adversarial training in phase 2: ε in pixel levels (of 255); 0 = off

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return validate(dataclasses.replace(self, **changes), "settings")


def _coerce(name: str, value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, str):
        return value
    raise ConfigError(f"{where}: key {name!r} must be {kind.__name__}, not {type(value).__name__} ({value!r})")


def from_mapping(values: dict[str, Any], where: str, base: TrainConfig | None = None) -> TrainConfig:
    """Apply a mapping of keys onto ``base`` (or the defaults), refusing unknown keys and wrong types."""
    kinds = {f.name: {"str": str, "int": int, "float": float, "bool": bool}[str(f.type)] for f in fields(TrainConfig)}
    changes = {}
    for name, value in values.items():
        if name not in kinds:
            raise ConfigError(f"{where}: unknown key {name!r} (known: {', '.join(sorted(kinds))})")
        changes[name] = _coerce(name, value, kinds[name], where)
    return validate(dataclasses.replace(base or TrainConfig(), **changes), where)


def load(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a TOML config (top-level keys, or a ``[train]`` table)."""
    path = Path(path)
    data = read_toml(path)
    if isinstance(data.get("train"), dict):
        data = data["train"]
    return from_mapping(data, str(path), base)


def validate(cfg: TrainConfig, where: str) -> TrainConfig:
    """Range checks with the key named; returns ``cfg`` with the fit spelling normalised."""

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: {key} {getattr(cfg, key)!r} {why}")

    if cfg.arch not in ARCHS:
        raise bad("arch", f"is not one of {', '.join(ARCHS)}")
    if cfg.alpha not in ALPHAS[cfg.arch]:
        raise bad("alpha", f"is not available for {cfg.arch} (use one of {', '.join(map(str, ALPHAS[cfg.arch]))})")
    if not MIN_SIZE <= cfg.size <= MAX_SIZE or cfg.size % 8:
        raise bad("size", f"must be a multiple of 8 from {MIN_SIZE} to {MAX_SIZE}")
    try:
        cfg.fit = normalise_fit(cfg.fit)
    except ValueError:
        raise bad("fit", "must be centre or stretch") from None
    for key in ("epochs_head", "epochs_finetune", "unfreeze", "patience", "views"):
        if getattr(cfg, key) < 0:
            raise bad(key, "must not be negative")
    if cfg.epochs_head + cfg.epochs_finetune == 0:
        raise bad("epochs_head", "and epochs_finetune are both 0: nothing would be trained")
    if cfg.batch_size < 1:
        raise bad("batch_size", "must be at least 1")
    for key in ("lr_head", "lr_finetune"):
        if not 0 < getattr(cfg, key) < 1:
            raise bad(key, "must be between 0 and 1")
    for key in ("dropout", "label_smoothing"):
        if not 0 <= getattr(cfg, key) < 1:
            raise bad(key, "must be in [0, 1)")
    for key in ("l2", "augment", "rotation", "zoom", "contrast", "brightness"):
        if not 0 <= getattr(cfg, key) <= 2:
            raise bad(key, "must be between 0 and 2")
    if not 0 <= cfg.adversarial <= 32:
        raise bad("adversarial", "must be from 0 to 32 pixel levels (8 = 8/255)")
    if cfg.weights not in ("imagenet", "none"):
        path = Path(cfg.weights)
        if not path.is_file():
            raise bad("weights", "is not imagenet, none or an existing weights file")
        if not path.name.endswith((".h5", ".keras")):
            raise bad("weights", "must be a Keras .h5, .weights.h5 or .keras file")
    return cfg


def dump_toml(values: dict[str, Any]) -> str:
    """A flat mapping as TOML (only str/int/float/bool values, which is all a config holds)."""
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"
