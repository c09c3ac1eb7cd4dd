"""The ``edgesight`` command: one entry point, one module per verb, imported only when used.

Trainer verbs live in ``edgesight.trainer`` and import TensorFlow inside their ``run``, so
``edgesight run`` and ``predict`` on a Pi start fast and never need TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from .core.errors import EdgesightError

# verb -> (module with configure(parser) and run(args) -> int, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "predict": ("edgesight.device.commands.predict", "classify image files or folders"),
    "info": ("edgesight.device.commands.info", "show a bundle's manifest or a model's tensors; verify hashes"),
    "run": ("edgesight.device.commands.run", "run the real-time classifier daemon (camera -> MQTT)"),
    "bench": ("edgesight.device.commands.bench", "measure latency and throughput of models and the pipeline"),
    "build-engine": ("edgesight.device.commands.build_engine", "build a TensorRT engine from a bundle's ONNX (Jetson)"),
    "data": ("edgesight.trainer.commands.data", "import, check and split an image dataset; report on it"),
    "train": ("edgesight.trainer.commands.train", "fine-tune a MobileNet on a dataset"),
    "export": ("edgesight.trainer.commands.export", "quantize a trained run and write a model bundle"),
    "evaluate": ("edgesight.trainer.commands.evaluate", "measure a bundle on a dataset split; HTML report"),
    "tune": ("edgesight.trainer.commands.tune", "search hyperparameters within a budget"),
}

log = logging.getLogger("edgesight")


def _chosen_verb(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Parser with every verb listed, but only the chosen verb's module imported."""
    parser = argparse.ArgumentParser(prog="edgesight", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    chosen = _chosen_verb(argv)
    for verb, (module_name, help_text) in VERBS.items():
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text)
        if verb == chosen:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                parser.exit(
                    1,
                    f"edgesight: error: '{verb}' needs a module that is not installed ({exc.name}); "
                    f"install the matching extra, e.g. pip install 'edgesight[trainer]'\n",
                )
            module.configure(verb_parser)
            verb_parser.set_defaults(_run=module.run)
    return parser


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; user errors become one line on stderr and exit 1 (2 for usage/config)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter, trainer side
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    try:
        return int(args._run(args) or 0)
    except EdgesightError as exc:
        print(f"edgesight: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgesight: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
