"""Quantize a trained run and write the model bundle the device loads with no further flags.

int8 is full-integer (every op int8, uint8 or int8 I/O) calibrated on the train split, so it
runs on a Pi's CPU at its fastest and compiles for an Edge TPU; fp16 halves the float model for
GPUs; float is the reference. Each model is then measured on the test split with the device's
own runtime, and those figures, the float/int8 agreement and the int8 score distribution (for
drift detection) go into the manifest.

Then a few probe images (from the test split, a few per class, or a folder given with
``--probe``) are stored with the answer the default model gives on LiteRT, so a device can
reproduce them before the bundle takes over, and the bundle is signed last when a key is given
(probes change the manifest, and the signature covers the manifest's exact bytes).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..device.classify import apply_temperature
from ..device.core.bundle import (
    DEFAULT_MODEL,
    EDGETPU_MODEL,
    MANIFEST,
    ONNX_MODEL,
    SIGNATURE,
    ModelSpec,
    variant_file,
    write_bundle,
)
from ..device.core.errors import EdgesightError, UsageError
from ..device.core.preprocess import Fit, InputContract, list_images
from ..device.core.signing import PROBES_JSON, KeyFileError, key_fingerprint, load_private_key, sign_bundle
from .backend import load_tensorflow, quiet_stderr
from .dataset import Dataset
from .inputs import load_images
from .measure import agreement, open_variant, score_distribution, score_frames, summarise
from .metadata import add_metadata
from .notify import Say, log_only
from .train import MODEL_FILE, RUN_CONFIG

log = logging.getLogger(__name__)

QUANTS = ("int8", "fp16", "float")
IO_TYPES = ("uint8", "int8")
CALIBRATION_IMAGES = 200
DEFAULT_MAX_PROBES = 8  # as device.selftest's; not imported from there so the CLI's --help stays light


def model_filenames(quants: list[str]) -> dict[str, str]:
    """quant -> file name; the first of int8, fp16, float that was asked for is ``model.tflite``."""
    ordered = [q for q in QUANTS if q in quants]
    return {q: DEFAULT_MODEL if i == 0 else variant_file(q) for i, q in enumerate(ordered)}


def read_run(run_dir: Path) -> dict[str, Any]:
    """The run's ``run.json``, refusing a directory that is not a finished training run."""
    info_path = run_dir / RUN_CONFIG
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    if not info_path.is_file() or not (run_dir / MODEL_FILE).is_file():
        raise UsageError(
            f"{run_dir}: not a finished training run (needs {RUN_CONFIG} and {MODEL_FILE}; run 'edgesight train' first)"
        )
    try:
        return json.loads(info_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{info_path}: not valid JSON ({exc})") from None


def representative(images: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """Calibration batches for int8: train images as float32 pixels.

    The first sample has one pixel set to 0 and one to 255, so the calibrated input range is
    exactly 0..255 and the input quantization comes out as (1.0, 0) / (1.0, -128): the device
    then feeds raw pixels with no arithmetic.
    """

    def generate() -> Iterator[list[np.ndarray]]:
        for i, image in enumerate(images):
            sample = image.astype(np.float32)[np.newaxis]
            if i == 0:
                sample[0, 0, 0, :] = 0.0
                sample[0, 0, -1, :] = 255.0
            yield [sample]

    return generate


def convert(saved_model: Path, quant: str, io: str, calibration: np.ndarray) -> bytes:
    """One TFLite flatbuffer from the SavedModel: full-integer int8, fp16 weights, or float."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if quant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8 if io == "uint8" else tf.int8
        converter.inference_output_type = tf.uint8 if io == "uint8" else tf.int8
    elif quant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    with quiet_stderr():  # the converter's C++ "fully_quantize: 0, inference_type: 6, ..." unless -v
        return converter.convert()


@dataclass
class _Inputs:
    """What a bundle is made from: the run, its dataset, and the images converting and measuring need."""

    run_dir: Path
    info: dict[str, Any]
    labels: tuple[str, ...]
    dataset: Dataset
    size: int
    fit: Fit
    calibration: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_paths: list[Path] = field(default_factory=list)


def _check_options(quants: list[str], io: str, edgetpu: bool) -> None:
    bad = [q for q in quants if q not in QUANTS]
    if bad:
        raise UsageError(f"--quant {bad[0]!r}: use {', '.join(QUANTS)}")
    if io not in IO_TYPES:
        raise UsageError(f"--io {io!r}: use uint8 or int8")
    if edgetpu and "int8" not in quants:
        raise UsageError("--edgetpu needs the int8 model (add --quant int8)")
    if edgetpu:
        from .edgetpu import find_compiler

        find_compiler()  # a missing compiler is known now, not after minutes of conversion


def _load_inputs(run_dir: Path, dataset_dir: str | Path | None) -> _Inputs:
    """The run's settings and labels, and its dataset's calibration (train) and test images."""
    info = read_run(run_dir)
    cfg = info["config"]
    size, fit = int(cfg["size"]), cfg["fit"]
    dataset = Dataset.load(dataset_dir or info["dataset"])
    labels = tuple(info["labels"])
    if tuple(dataset.labels) != labels:
        raise UsageError(f"{dataset.root}: its labels {list(dataset.labels)} differ from the run's {list(labels)}")
    train_paths, _ = dataset.subset("train")
    rng = np.random.default_rng(0)
    pick = sorted(rng.permutation(len(train_paths))[:CALIBRATION_IMAGES])
    calibration = load_images([train_paths[i] for i in pick], size, fit)
    test_paths, test_y = dataset.subset("test")
    test_x = load_images(test_paths, size, fit) if test_paths else np.zeros((0, size, size, 3), np.uint8)
    return _Inputs(run_dir, info, labels, dataset, size, fit, calibration, test_x, test_y, list(test_paths))


def _convert_all(model: Any, files: dict[str, str], io: str, calibration: np.ndarray, out_dir: Path) -> None:
    """Every asked-for TFLite model, converted from one SavedModel export of the Keras model."""
    with tempfile.TemporaryDirectory(prefix="edgesight-export-") as tmp:
        saved = Path(tmp) / "saved_model"
        model.export(str(saved), format="tf_saved_model", verbose=False)
        for quant, filename in files.items():
            log.info("converting %s -> %s", quant, filename)
            (out_dir / filename).write_bytes(convert(saved, quant, io, calibration))


def _measure(
    files: dict[str, str], inputs: _Inputs, contract: InputContract, out_dir: Path
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """(test scores per quant, per-file quantization entries, metrics) with the device runtime."""
    spec = ModelSpec(out_dir / DEFAULT_MODEL, inputs.labels, contract)
    scores: dict[str, np.ndarray] = {}
    quantization: dict[str, Any] = {}
    runtime = ""
    for quant, filename in files.items():
        classifier = open_variant(spec, out_dir / filename)
        runtime = classifier.runtime.name
        scores[quant] = score_frames(classifier, inputs.test_x, order="RGB")
        quantization[filename] = {
            "precision": quant,
            "input": [
                classifier.runtime.input.dtype,
                round(float(classifier.runtime.input.scale), 6),
                int(classifier.runtime.input.zero_point),
            ],
        }
    metrics: dict[str, Any] = {
        "split": "test",
        "runtime": runtime,
        **{quant: summarise(s, inputs.test_y) for quant, s in scores.items()},
    }
    if "float" in scores:
        metrics["agreement_with_float"] = {q: agreement(scores["float"], s) for q, s in scores.items() if q != "float"}
    metrics["keras_float_accuracy"] = inputs.info.get("metrics", {}).get("test_accuracy")
    return scores, quantization, metrics


def _accelerator_files(
    model: Any, files: dict[str, str], inputs: _Inputs, out_dir: Path, onnx: bool, edgetpu: bool, extra: dict
) -> dict[str, Path]:
    """model.onnx and model_edgetpu.tflite when asked for; their checks go into ``extra``."""
    extra_files: dict[str, Path] = {}
    default_file = next(iter(files.values()))
    if onnx:
        from .onnx_export import compare_with_tflite, export_onnx

        onnx_path = export_onnx(model, out_dir / ONNX_MODEL, inputs.size)
        reference = out_dir / files.get("float", default_file)
        extra["onnx"] = compare_with_tflite(onnx_path, reference, list(inputs.test_x[:50]))
        extra_files[ONNX_MODEL] = onnx_path
    if edgetpu:
        from .edgetpu import compile_edgetpu

        tpu_path, tpu_info = compile_edgetpu(out_dir / files["int8"], out_dir)
        target = out_dir / EDGETPU_MODEL
        if tpu_path.resolve() != target.resolve():
            os.replace(tpu_path, target)
        extra["edgetpu"] = tpu_info
        extra_files[EDGETPU_MODEL] = target
    return extra_files


def _calibrate(
    files: dict[str, str],
    inputs: _Inputs,
    contract: InputContract,
    out_dir: Path,
    scores: dict[str, np.ndarray],
    target_precision: float | None,
    say: Say,
) -> Any:
    """Temperature (and per-class thresholds) fitted on the val split's scores of the default model.

    Returns a :class:`~.calibration.Calibration`, or None when the dataset has no val split.
    The reliability diagram goes to RUN_DIR/calibration/reliability.png (the bundle stays lean).
    """
    from .calibration import calibrate

    val_paths, val_y = inputs.dataset.subset("val")
    if not val_paths:
        say("no val images: scores are not calibrated and no thresholds were chosen")
        return None
    default_quant = next(iter(files))
    spec = ModelSpec(out_dir / DEFAULT_MODEL, inputs.labels, contract)
    classifier = open_variant(spec, out_dir / files[default_quant])
    val_scores = score_frames(classifier, load_images(val_paths, inputs.size, inputs.fit), order="RGB")
    held_out = {q: (s, inputs.test_y) for q, s in scores.items()}
    result = calibrate(
        (val_scores, val_y),
        held_out,
        inputs.labels,
        fitted_on=default_quant,
        target_precision=target_precision,
        plot_path=inputs.run_dir / "calibration" / "reliability.png",
    )
    c = result.section
    say(
        f"calibration: temperature {c['temperature']:.3f} fitted on {len(val_y)} val images; "
        f"ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f} ({c['measured_on']}); diagram {result.plot}"
    )
    for note in result.notes:
        say(f"thresholds: {note}")
    return result


def _architecture(cfg: dict[str, Any], size: int, classes: int) -> dict[str, Any]:
    return {
        "family": cfg["arch"],
        "alpha": cfg["alpha"],
        "input_size": size,
        "num_classes": classes,
        "weights": _weights_name(cfg["weights"]),
        "normalisation": "in graph: Rescaling(1/127.5, offset=-1); feed RGB pixels 0..255",
    }


@dataclass
class Exported:
    """What :func:`export` wrote: the manifest, the self-test probes stored, and who signed it."""

    manifest: dict[str, Any]
    probes: list[dict[str, Any]]
    probe_source: str  # "test split", the --probe folder, or why there are none
    signer: str | None = None


def probe_candidates(paths: Sequence[Path], targets: np.ndarray) -> list[Path]:
    """Test images in round-robin order over the classes (each class sorted by path).

    ``write_probes`` keeps the first ``max_probes`` it is sure about, so this order gives a few
    per class, the same ones on every export of the same dataset.
    """
    by_class: dict[int, list[Path]] = {}
    for path, target in sorted(zip(paths, (int(t) for t in targets)), key=lambda row: str(row[0])):
        by_class.setdefault(target, []).append(path)
    queues = [by_class[k] for k in sorted(by_class)]
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


def _clear_stale(out_dir: Path) -> None:
    """Drop a previous export's signature and probes: the new manifest would not match them."""
    (out_dir / SIGNATURE).unlink(missing_ok=True)
    probes_json = out_dir / PROBES_JSON
    probes_json.unlink(missing_ok=True)
    for old in probes_json.parent.glob("probe_*.png"):
        old.unlink()


def _store_probes(
    out_dir: Path, inputs: _Inputs, probe_dir: str | Path | None, max_probes: int, say: Say
) -> tuple[list[dict[str, Any]], str]:
    """Probes from ``probe_dir`` (a bad folder is an error) or the test split (a warning at worst)."""
    from ..device.selftest import write_probes  # needs cv2 and LiteRT, as measuring did

    if probe_dir is not None:
        try:
            return write_probes(out_dir, list_images([probe_dir]), max_probes=max_probes), str(probe_dir)
        except EdgesightError as exc:
            raise EdgesightError(f"{exc}; bundle {out_dir} was written without self-test probes") from None
    candidates = probe_candidates(inputs.test_paths, inputs.test_y)
    if not candidates:
        say("no test images: the bundle has no self-test probes (give some with --probe DIR)")
        return [], "none (empty test split)"
    try:
        return write_probes(out_dir, candidates, max_probes=max_probes), "test split"
    except EdgesightError as exc:
        say(f"warning: no self-test probes stored: {exc}")
        return [], "none (the model is unsure on every test image)"


def _sign(out_dir: Path, key: str | Path) -> str:
    """Sign the finished bundle; a refused key leaves it valid but unsigned, and the error says so."""
    try:
        sign_bundle(out_dir, key)
        return key_fingerprint(load_private_key(key))
    except KeyFileError as exc:
        raise KeyFileError(
            f"{exc}; bundle {out_dir} was written and is valid but unsigned "
            f"(sign it later with: edgesight bundle sign {out_dir} --key {key})"
        ) from None


def export(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    quants: list[str] | None = None,
    io: str = "uint8",
    onnx: bool = False,
    edgetpu: bool = False,
    name: str | None = None,
    version: str | None = None,
    dataset_dir: str | Path | None = None,
    probes: bool = True,
    probe_dir: str | Path | None = None,
    max_probes: int = DEFAULT_MAX_PROBES,
    sign_key: str | Path | None = None,
    say: Say | None = None,
    calibrate: bool = True,
    target_precision: float | None = None,
) -> Exported:
    """Convert, measure, bundle, store self-test probes, then sign; returns what was written.

    Order matters: probes rewrite the manifest, and the signature is over the final manifest.
    """
    say = say or log_only(log)
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    quants = list(dict.fromkeys(quants or QUANTS))
    _check_options(quants, io, edgetpu)
    if max_probes < 1:
        raise UsageError("--max-probes must be at least 1")
    if target_precision is not None and not (0.0 < target_precision <= 1.0):
        raise UsageError(f"--target-precision {target_precision:g}: expected a precision in (0, 1]")
    if target_precision is not None and not calibrate:
        raise UsageError("--target-precision and --no-calibration contradict each other")
    if probe_dir is not None:
        if not probes:
            raise UsageError("--probe and --no-probes contradict each other")
        list_images([probe_dir])  # a wrong folder is known now, not after minutes of conversion
    if sign_key is not None and not Path(sign_key).is_file():
        raise KeyFileError(f"{sign_key}: no such private key file (make one with: edgesight keys generate DIR)")
    if out_dir.exists() and (out_dir / MANIFEST).exists() and out_dir.resolve() != run_dir.resolve():
        log.info("%s: replacing the bundle there", out_dir)
    inputs = _load_inputs(run_dir, dataset_dir)
    cfg = inputs.info["config"]

    tf, keras = load_tensorflow()
    model = keras.models.load_model(run_dir / MODEL_FILE)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_stale(out_dir)
    files = model_filenames(quants)
    _convert_all(model, files, io, inputs.calibration, out_dir)
    say(f"converted {', '.join(f'{q} -> {f}' for q, f in files.items())} (TensorFlow {tf.__version__})")

    contract = InputContract(inputs.size, inputs.size, mean=0.0, std=1.0, fit=inputs.fit)  # the graph normalises
    scores, quantization, metrics = _measure(files, inputs, contract, out_dir)
    default_quant = next(iter(files))
    calibrated = _calibrate(files, inputs, contract, out_dir, scores, target_precision, say) if calibrate else None
    shipped = scores[default_quant]
    if calibrated is not None:  # the device's drift check sees calibrated scores, so the reference must too
        shipped = apply_temperature(shipped, calibrated.section["temperature"]) if len(shipped) else shipped
    extra: dict[str, Any] = {
        "models": quantization,
        "test_distribution": {
            "model": files[default_quant],
            **score_distribution(shipped, inputs.labels),
        },
        "training": {
            "run_dir": str(run_dir.resolve()),
            "dataset": str(inputs.dataset.root.resolve()),
            "config": cfg,
            "metrics": inputs.info.get("metrics", {}),
            "trained": inputs.info.get("created"),
        },
    }
    if calibrated is not None:
        extra["calibration"] = calibrated.section
        if calibrated.thresholds:
            extra["thresholds"] = calibrated.thresholds
    extra_files = _accelerator_files(model, files, inputs, out_dir, onnx, edgetpu, extra)
    created = datetime.now(timezone.utc)
    name, version = name or run_dir.name, version or created.strftime("%Y.%m.%d-%H%M")
    # Standard TFLite metadata (MediaPipe/Android loaders); before write_bundle hashes the files.
    add_metadata([out_dir / f for f in files.values()], inputs.labels, contract, name=name, version=version)
    write_bundle(
        out_dir,
        {f: out_dir / f for f in files.values()},
        list(inputs.labels),
        name=name,
        version=version,
        architecture=_architecture(cfg, inputs.size, len(inputs.labels)),
        contract=contract,
        background_index=None,
        metrics=metrics,
        extra_files=extra_files,
        extra=extra,
    )
    stored: list[dict[str, Any]] = []
    source = "none (--no-probes)"
    if probes:
        stored, source = _store_probes(out_dir, inputs, probe_dir, max_probes, say)
    signer = _sign(out_dir, sign_key) if sign_key is not None else None
    manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    return Exported(manifest, stored, source, signer)


def _weights_name(weights: str) -> str:
    return weights if weights in ("imagenet", "none") else Path(weights).name
