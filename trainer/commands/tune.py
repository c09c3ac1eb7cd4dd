"""``edgesight tune DATASET_DIR --out DIR``: random/grid search; tune.csv best first; best.toml for train."""

from __future__ import annotations

import argparse
import math

from .output import say, shown
from .train import add_config_arguments, config_from_args

TUNE_EXAMPLES = """\
examples:
  edgesight tune ds --out tuned                        # 10 random trials over the default space
  edgesight tune ds --out tuned --trials 30 --minutes 60
  edgesight tune ds --out tuned --method grid --space space.toml
  edgesight train ds --out runs/best --config tuned/best.toml
  edgesight tune ds --out fast --budget-ms 10 --target pi4 --minutes 30   # most accurate model within 10 ms
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = TUNE_EXAMPLES
    parser.add_argument("dataset", metavar="DATASET_DIR", help="a dataset made by 'edgesight data import'")
    parser.add_argument("--out", metavar="DIR", required=True, help="where trials, tune.csv and best.toml go")
    parser.add_argument(
        "--method",
        choices=("random", "grid"),
        default="random",
        help="random: sample the space; grid: every combination in order (default random)",
    )
    parser.add_argument(
        "--trials", type=int, default=10, metavar="N", help="at most N trials, each a full training run (default 10)"
    )
    parser.add_argument(
        "--minutes",
        type=float,
        metavar="M",
        help="time budget in minutes: start no new trial after M minutes (default: no limit)",
    )
    parser.add_argument(
        "--space",
        metavar="FILE",
        help="TOML of key = [values] to search (default: lr_finetune, lr_head, alpha, size, augment, dropout)",
    )
    parser.add_argument(
        "--budget-ms",
        type=float,
        metavar="MS",
        help="latency-budgeted search instead: backbones x input sizes x head settings, each int8 model "
        "timed with LiteRT (1 thread) and scaled to --target; keeps only candidates within MS (estimates)",
    )
    parser.add_argument(
        "--target",
        choices=("pi4", "pi5", "jetson-orin-nano", "this"),
        default="this",
        help="with --budget-ms: the device the budget is for (default this: measured here, unscaled)",
    )
    add_config_arguments(parser)


def run_budget(args: argparse.Namespace) -> int:
    import logging

    from ..tune import tune_budget
    from .train import progress

    base = config_from_args(args)
    front = tune_budget(
        args.dataset,
        args.out,
        base,
        budget_ms=args.budget_ms,
        target=args.target,
        minutes=args.minutes,
        space_file=args.space,
        say=say,
        progress=progress,
        verbose=logging.getLogger().isEnabledFor(logging.DEBUG),
    )
    print(f"\nPareto front within {args.budget_ms:g} ms on {args.target} (latencies are estimates):")
    print(f"{'backbone':<28} {'dropout':>7} {'lr_head':>8} {'val_acc':>7} {'est ms':>7} {'here ms':>7} {'int8 KB':>8}")
    for c in front:
        print(
            f"{c.label():<28} {c.head['dropout']:>7g} {c.head['lr_head']:>8g} {c.val_accuracy:>7.3f} "
            f"{c.estimated_ms:>7.2f} {c.measured_ms:>7.2f} {c.model_kb:>8.0f}"
        )
    best = front[0]
    weights = " (random-init backbone: no shared weights for it)" if best.weights == "none" else ""
    print(
        f"\nbest within budget: {best.label()}{weights}; wrote {shown(args.out)}/tune.csv, pareto.png and "
        f"best.toml (edgesight train DATASET_DIR --out RUN_DIR --config {shown(args.out)}/best.toml)"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    if args.budget_ms is not None:
        return run_budget(args)
    from ..tune import tune

    base = config_from_args(args)
    ranked = tune(
        args.dataset,
        args.out,
        base,
        method=args.method,
        trials=args.trials,
        minutes=args.minutes,
        space_file=args.space,
        say=say,
    )
    keys = list(ranked[0].params)
    print("\nrank  trial  " + "  ".join(f"{k:>11}" for k in keys) + "  val_acc  val_loss  seconds")
    for rank, t in enumerate(ranked, start=1):
        loss = "failed" if t.error else f"{t.val_loss:8.3f}" if not math.isnan(t.val_loss) else "     n/a"
        print(
            f"{rank:>4}  {t.number:>5}  "
            + "  ".join(f"{t.params[k]!s:>11}" for k in keys)
            + f"  {t.val_accuracy:7.3f}  {loss}  {t.seconds:7.0f}"
        )
    print(
        f"\nwrote {args.out}/tune.csv and {args.out}/best.toml "
        f"(edgesight train DATASET_DIR --out RUN_DIR --config {args.out}/best.toml)"
    )
    return 0
