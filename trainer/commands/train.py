"""``edgesight train DATASET_DIR --out RUN_DIR``: fine-tune a MobileNet; ``--kfold K`` cross-validates."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from dataclasses import fields
from typing import Any, TypeVar

from ...device.core.errors import UsageError
from ..config import ARCHS, TrainConfig, from_mapping, load
from .output import say, shown

# One help line per TrainConfig key, with its unit; a test checks that none is missing.
HELP = {
    "arch": f"backbone network: {', '.join(ARCHS)}",
    "alpha": "backbone width multiplier (MobileNetV2: 0.35-1.4; V3: 0.75 or 1.0); smaller is faster",
    "size": "square input size in pixels, a multiple of 8 from 96 to 224",
    "fit": "how a photo is fitted to the square input: centre (crop the middle) or stretch",
    "weights": "starting weights: imagenet (Keras download), none (random, with a warning) or a .h5/.keras file",
    "epochs_head": "phase 1: at most this many epochs training the new head on a frozen backbone",
    "epochs_finetune": "phase 2: at most this many epochs with the top backbone layers unfrozen",
    "unfreeze": "phase 2: number of backbone layers, counted from the top, that are trained",
    "lr_head": "phase 1 learning rate of the Adam optimiser (0-1)",
    "lr_finetune": "phase 2 learning rate of the Adam optimiser (0-1); keep it small",
    "batch_size": "images per training step",
    "dropout": "dropout rate before the classifier layer, a fraction in [0, 1)",
    "l2": "L2 weight-decay factor on the classifier layer's weights (0-2)",
    "label_smoothing": "label smoothing of the cross-entropy loss, a fraction in [0, 1)",
    "augment": "multiplies rotation, zoom, contrast and brightness below (0 turns augmentation off)",
    "flip": "random left-right mirroring of training photos",
    "rotation": "random rotation up to this fraction of a full turn (0.05 = 18 degrees)",
    "zoom": "random zoom-in up to this fraction of the image size",
    "contrast": "random contrast change up to this fraction",
    "brightness": "random brightness change up to this fraction of the pixel range",
    "class_weights": "weight the loss by inverse class frequency, so small classes count as much",
    "patience": "early stopping: epochs without a better validation loss before a phase stops",
    "cache_features": "phase 1 on backbone features computed once instead of every epoch (much faster)",
    "views": "augmented copies per training photo cached for phase 1, besides its mirror (0 = none)",
    "seed": "random seed of weights, augmentation and shuffling",
    "adversarial": "FGSM adversarial training in phase 2 (fine-tuning, on pixels): each batch plus its FGSM "
    "images at this ε in pixel levels of 255 (e.g. 2 = 2/255); 0 = off",
}

METAVARS = {
    "adversarial": "EPS",
    "size": "PX",
    "fit": "centre|stretch",
    "weights": "imagenet|none|FILE",
    "arch": "ARCH",
}

TRAIN_EXAMPLES = """\
examples:
  edgesight train ds --out runs/first                  # defaults: MobileNetV2 1.0 at 160 px
  edgesight train ds --out runs/small --alpha 0.35 --size 96 --epochs-finetune 0
  edgesight train ds --out runs/best --config tuned/best.toml
  edgesight train ds --out runs/first --resume         # continue an interrupted run
  edgesight train ds --out runs/cv --kfold 5           # 5-fold cross-validation, no model kept
"""


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig key (``--epochs-head``...); a flag overrides --config, which overrides defaults."""
    defaults = TrainConfig()
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file of training keys (e.g. tune's best.toml); flags override it"
    )
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        shown_default = ("on" if default else "off") if isinstance(default, bool) else default
        help_text = f"{HELP[f.name]} (default {shown_default})"
        if f.type == "bool":
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            metavar = METAVARS.get(f.name, "N" if kind is int else "X" if kind is float else None)
            parser.add_argument(
                flag,
                dest=f.name,
                type=kind,
                default=None,
                help=help_text,
                metavar=metavar,
                choices=ARCHS if f.name == "arch" else None,
            )


def explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig keys given as flags on this command line."""
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    cfg = load(args.config) if args.config else TrainConfig()
    return from_mapping(explicit_settings(args), "command line", cfg)


T = TypeVar("T")


def progress(items: Iterable[T], total: int, what: str) -> Iterable[T]:
    """A tqdm bar on stderr for a long library step (loading, feature caching, evaluation, calibration).

    Shown on a terminal whatever -v says; in logs and CI (not a tty) it is off, and the
    ``say`` lines still mark each step.
    """
    from tqdm import tqdm

    return tqdm(items, total=total, desc=what, unit="step", leave=False, disable=not sys.stderr.isatty())


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    """--stream and --strategy: how inputs are held and which tf.distribute strategy trains."""
    parser.add_argument(
        "--stream",
        choices=("auto", "on", "off"),
        default="auto",
        help="hold fitted photos and features in memory (off) or stream them from a cache under the run dir "
        "(on); auto streams above about 256 MB of them (default auto)",
    )
    parser.add_argument(
        "--strategy",
        choices=("auto", "mirrored", "default"),
        default="auto",
        help="tf.distribute strategy: mirrored uses every GPU (global batch = batch size x GPUs); "
        "auto picks mirrored when more than one GPU is visible (default auto)",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = TRAIN_EXAMPLES
    parser.add_argument("dataset", metavar="DATASET_DIR", help="a dataset made by 'edgesight data import'")
    parser.add_argument("--out", metavar="RUN_DIR", required=True, help="run directory (model, logs, checkpoints)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
    parser.add_argument(
        "--kfold",
        type=int,
        metavar="K",
        help="k-fold cross-validation over the whole dataset instead of one run; writes kfold.json/csv",
    )
    parser.add_argument(
        "--kfold-val",
        type=float,
        default=0.1,
        metavar="FRACTION",
        help="with --kfold: part of each training fold held out for early stopping "
        "(default 0.1; 0 trains every fold for the full epochs)",
    )
    add_scale_arguments(parser)
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.kfold is not None:
        if args.resume:
            raise UsageError("--resume and --kfold cannot be combined")
        from ..train import kfold

        summary = kfold(
            args.dataset,
            args.out,
            cfg,
            args.kfold,
            val_fraction=args.kfold_val,
            say=say,
            stream=args.stream,
            strategy=args.strategy,
            progress=progress,
        )
        print(
            f"{args.kfold}-fold accuracy {summary['mean_accuracy']:.3f} +/- {summary['std_accuracy']:.3f} "
            f"(head only {summary['head_only_mean_accuracy']:.3f} +/- {summary['head_only_std_accuracy']:.3f}) "
            f"in {summary['seconds']:.0f} s; wrote {shown(args.out)}/kfold.json"
        )
        return 0
    from ..train import train

    result = train(
        args.dataset,
        args.out,
        cfg,
        resume=args.resume,
        resume_overrides=explicit_settings(args),
        say=say,
        stream=args.stream,
        strategy=args.strategy,
        progress=progress,
    )
    figures = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items() if not math.isnan(v))
    print(f"trained in {result.seconds:.0f} s: {figures}")
    print(f"wrote {shown(result.model_path)}; next: edgesight export {shown(args.out)} --out BUNDLE_DIR")
    return 0
