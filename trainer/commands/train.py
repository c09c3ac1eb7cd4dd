"""``edgesight train DATASET_DIR --out RUN_DIR``: fine-tune a MobileNet; ``--kfold K`` cross-validates."""

from __future__ import annotations

import argparse
import math
from dataclasses import fields
from typing import Any

from ...device.core.errors import UsageError
from ..config import ARCHS, TrainConfig, from_mapping, load

HELP = {
    "arch": f"backbone: {', '.join(ARCHS)}",
    "alpha": "width multiplier (MobileNetV2: 0.35-1.4; V3: 0.75 or 1.0)",
    "size": "input size in px, 96-224",
    "fit": "how a photo is fitted to the square input: centre (crop) or stretch",
    "weights": "imagenet (Keras download), none (random, with a warning) or a local .h5/.keras file",
    "epochs_head": "phase 1 epochs (head only, frozen backbone)",
    "epochs_finetune": "phase 2 epochs (top layers unfrozen)",
    "unfreeze": "backbone layers, from the top, trained in phase 2",
    "augment": "augmentation strength multiplier (0 = off)",
    "cache_features": "phase 1 on backbone features computed once (fast)",
    "views": "augmented copies per training photo cached for phase 1, besides its mirror (0 = none)",
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig key (``--epochs-head``...); a flag overrides --config, which overrides defaults."""
    defaults = TrainConfig()
    parser.add_argument("--config", metavar="FILE", help="TOML file of training keys (e.g. tune's best.toml)")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = f"{HELP.get(f.name, f.name.replace('_', ' '))} (default {default})"
        if f.type == "bool":
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            parser.add_argument(
                flag, dest=f.name, type=kind, default=None, help=help_text, choices=ARCHS if f.name == "arch" else None
            )


def explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig keys given as flags on this command line."""
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    cfg = load(args.config) if args.config else TrainConfig()
    return from_mapping(explicit_settings(args), "command line", cfg)


def configure(parser: argparse.ArgumentParser) -> None:
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
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.kfold is not None:
        if args.resume:
            raise UsageError("--resume and --kfold cannot be combined")
        from ..train import kfold

        summary = kfold(args.dataset, args.out, cfg, args.kfold, val_fraction=args.kfold_val)
        print(
            f"{args.kfold}-fold accuracy {summary['mean_accuracy']:.3f} +/- {summary['std_accuracy']:.3f} "
            f"(head only {summary['head_only_mean_accuracy']:.3f} +/- {summary['head_only_std_accuracy']:.3f}) "
            f"in {summary['seconds']:.0f} s; wrote {args.out}/kfold.json"
        )
        return 0
    from ..train import train

    result = train(args.dataset, args.out, cfg, resume=args.resume, resume_overrides=explicit_settings(args))
    shown = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items() if not math.isnan(v))
    print(f"trained in {result.seconds:.0f} s: {shown}")
    print(f"wrote {result.model_path}; next: edgesight export {args.out} --out BUNDLE_DIR")
    return 0
