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

from .. import __version__
from .core.errors import EdgesightError

DESCRIPTION = """\
Labelled photos in, a real-time image classifier on a Raspberry Pi or Jetson out.

On the workstation: data import -> train -> export writes a model bundle. On the device:
predict, info and bench try a bundle; run is the camera -> MQTT daemon (a systemd service).
Each verb has its own help with examples: edgesight VERB --help."""

EPILOG = """\
examples:
  edgesight predict models/flowers photo.jpg
  edgesight run --model models/flowers --source 0 --broker 192.168.1.10 --device-id porch
  edgesight data import ~/photos datasets/birds && edgesight train datasets/birds --out runs/birds

exit codes: 0 success, 2 usage, config or set-up error, 1 any other error (one line on stderr)."""

# verb -> (module with configure(parser) and run(args) -> int, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "predict": ("edgesight.device.commands.predict", "classify image files or folders"),
    "info": ("edgesight.device.commands.info", "show a bundle's manifest or a model's tensors; verify hashes"),
    "run": ("edgesight.device.commands.run", "run the real-time classifier daemon (camera -> MQTT)"),
    "bench": ("edgesight.device.commands.bench", "measure latency and throughput of models and the pipeline"),
    "build-engine": ("edgesight.device.commands.build_engine", "build a TensorRT engine from a bundle's ONNX (Jetson)"),
    "bundle": ("edgesight.device.commands.bundle", "wrap a .tflite into a bundle; sign, verify, self-test bundles"),
    "keys": ("edgesight.device.commands.keys", "generate the Ed25519 deploy key pair that signs bundles"),
    "doctor": (
        "edgesight.device.commands.doctor",
        "check what this device can run and what blocks it (exit 1: the config needs it)",
    ),
    "deploy": ("edgesight.device.commands.deploy", "send a signed bundle to devices over the broker, canaries first"),
    "fleet": ("edgesight.device.commands.fleet", "list every device on the broker: model, deploy state, fps, drift"),
    "data": ("edgesight.trainer.commands.data", "import, check and split an image dataset; report on it"),
    "train": ("edgesight.trainer.commands.train", "fine-tune a MobileNet on a dataset"),
    "export": ("edgesight.trainer.commands.export", "quantize a trained run and write a model bundle"),
    "evaluate": ("edgesight.trainer.commands.evaluate", "measure a bundle on a dataset split; HTML report"),
    "tune": ("edgesight.trainer.commands.tune", "search hyperparameters within a budget"),
}

# verb -> the examples shown under its --help (kept here, beside the verb table, so every verb
# has them without each command module building its own help layout).
EXAMPLES: dict[str, str] = {
    "predict": """\
  edgesight predict models/flowers photo.jpg                    # a bundle: labels come with it
  edgesight predict models/flowers photos/ --top-k 5 --json     # a folder; one JSON object a line
  edgesight predict mobilenet_v2_1.0_224_quant.tflite cat.jpg --labels imagenet_labels.txt
  edgesight predict models/flowers photo.jpg --runtime onnx     # or litert / edgetpu / tensorrt""",
    "info": """\
  edgesight info models/flowers                 # manifest, tensors, sha256 check of every file
  edgesight info models/flowers --json
  edgesight info mobilenet_v2_1.0_224_quant.tflite --labels imagenet_labels.txt""",
    "run": """\
  edgesight run --print-config > edgesight.toml                 # every key, documented
  edgesight run --config /etc/edgesight/edgesight.toml --check  # validate, load model, open camera
  edgesight -v run --model models/flowers --source 0 --broker 192.168.1.10:1883 --device-id porch
  edgesight run --model models/flowers --source picamera2 --no-mqtt
  edgesight run --model models/flowers --source clip.mp4 --max-frames 100""",
    "bench": """\
  edgesight bench models/flowers                                # one bundle, everything but MQTT
  edgesight bench models/flowers --all-variants --runtime all   # every variant on every runtime here
  edgesight bench a.tflite b.tflite --labels labels.txt --threads 1,2,4 --mqtt --json out.json
  edgesight bench models/flowers --source porch.mp4 --frames 600""",
    "build-engine": """\
  edgesight build-engine models/flowers --fp16        # on the Jetson itself; cached in engines/
  edgesight build-engine models/flowers --int8 --calibration camera-frames/""",
    "bundle": """\
  edgesight bundle create mobilenet_v2_1.0_224_quant.tflite --labels imagenet_labels.txt --out models/imagenet
  edgesight bundle create model.tflite --labels labels.txt --out models/m --probe photos/ --sign keys/deploy.key
  edgesight bundle sign models/flowers --key keys/deploy.key            # writes models/flowers/manifest.sig
  edgesight bundle verify models/flowers --key /etc/edgesight/deploy.pub  # prints the signer's fingerprint
  edgesight bundle self-test models/flowers --runtime litert            # reproduce the stored probes""",
    "keys": """\
  edgesight keys generate ~/.edgesight/keys        # deploy.key (mode 600) + deploy.pub; never overwrites
  edgesight keys fingerprint ~/.edgesight/keys/deploy.pub""",
    "doctor": """\
  edgesight doctor                                              # runtime, camera stack, OpenCV, accelerators
  sudo -u edgesight edgesight doctor --config /etc/edgesight/edgesight.toml   # as the service sees it
  edgesight doctor --config edgesight.toml --json""",
    "deploy": """\
  edgesight deploy models/flowers --broker 192.168.1.10 --device porch           # one device
  edgesight deploy models/flowers --broker mqtt.lan --all --canary 1 --wait 120  # every device, one canary first
  edgesight deploy models/flowers --config /etc/edgesight/edgesight.toml --device porch --key keys/deploy.key""",
    "fleet": """\
  edgesight fleet --broker 192.168.1.10
  edgesight fleet --broker mqtt.lan:8883 --tls --ca-file ca.crt --username ops --password-file pw --json""",
    "data": """\
  edgesight data import ~/photos datasets/birds       # folder per class, or Images/ + Annotations/ (VOC)
  edgesight data import ~/photos datasets/birds --split 70/15/15 --no-move
  edgesight data report datasets/birds""",
    "train": """\
  edgesight train datasets/birds --out runs/birds --weights imagenet
  edgesight train datasets/birds --out runs/birds --arch mobilenet_v3_small --size 160
  edgesight train datasets/birds --out runs/birds --kfold 5     # cross-validate
  edgesight train datasets/birds --out runs/birds --config best.toml""",
    "export": """\
  edgesight export runs/birds --out models/birds                # int8 model.tflite + fp16 + float
  edgesight export runs/birds --out models/birds --quant int8 --onnx --edgetpu""",
    "evaluate": """\
  edgesight evaluate models/birds datasets/birds                # models/birds/report/report.html
  edgesight evaluate models/birds datasets/birds --split val --report out/""",
    "tune": """\
  edgesight tune datasets/birds --out tune/birds --trials 20
  edgesight tune datasets/birds --out tune/birds --method grid --minutes 30
  edgesight train datasets/birds --out runs/birds --config tune/birds/best.toml""",
}

# Top-level name of a module that may be missing -> what provides it. The trainer's and the
# device's extras differ, and Python 3.10 needs a TOML backport, so "install [trainer]" is not
# the answer to every missing module.
_DEVICE = "the [device] extra: pip install 'edgesight[device]'"
_TRAINER = "the [trainer] extra (workstation, Python 3.11+): pip install 'edgesight[trainer]'"
PROVIDERS: dict[str, str] = {
    "tomllib": "the tomli backport on Python 3.10: pip install tomli (the [device] extra includes it)",
    "tomli": "the tomli backport on Python 3.10: pip install tomli (the [device] extra includes it)",
    "cv2": _DEVICE,
    "paho": _DEVICE,
    "ai_edge_litert": _DEVICE,
    "prometheus_client": _DEVICE,
    "psutil": _DEVICE,
    "tqdm": _DEVICE,
    "cryptography": _DEVICE,
    "numpy": _DEVICE,
    "tensorflow": _TRAINER,
    "keras": _TRAINER,
    "tf_keras": _TRAINER,
    "sklearn": _TRAINER,
    "matplotlib": _TRAINER,
    "imagehash": _TRAINER,
    "PIL": _TRAINER,
    "tf2onnx": _TRAINER,
    "onnx": _TRAINER,
    "tensorboard": _TRAINER,
    "onnxruntime": "the [onnx] extra: pip install 'edgesight[onnx]'",
    "cuda": "the [jetson] extra: pip install 'edgesight[jetson]'",
    "picamera2": "apt install python3-picamera2 (venv with --system-site-packages) or the [pi] extra",
}

log = logging.getLogger("edgesight")


def missing_module_message(verb: str, name: str | None) -> str:
    """One line naming the module that is missing and what installs it."""
    root = (name or "").split(".")[0]
    if root == "edgesight":
        fix = "the installation is incomplete; reinstall edgesight (pip install --force-reinstall)"
    else:
        fix = PROVIDERS.get(root, f"install the package that provides '{root or name}'")
    return f"'{verb}' needs the Python module '{name}', which is not installed; it comes with {fix}"


def _chosen_verb(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Parser with every verb listed, but only the chosen verb's module imported."""
    parser = argparse.ArgumentParser(
        prog="edgesight",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgesight {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    chosen = _chosen_verb(argv)
    for verb, (module_name, help_text) in VERBS.items():
        examples = EXAMPLES.get(verb)
        verb_parser = sub.add_parser(
            verb,
            help=help_text,
            description=help_text,
            epilog=f"examples:\n{examples}" if examples else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if verb == chosen:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                parser.exit(2, f"edgesight: error: {missing_module_message(verb, exc.name)}\n")
            module.configure(verb_parser)
            verb_parser.set_defaults(_run=module.run)
    return parser


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; user errors become one line on stderr and exit 1 (2 for usage/config/set-up)."""
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
    except ModuleNotFoundError as exc:
        # A verb that imports its heavy dependencies lazily (TensorFlow inside the trainer's run).
        if (exc.name or "").split(".")[0] not in PROVIDERS:
            raise
        print(f"edgesight: error: {missing_module_message(args.verb, exc.name)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgesight: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
