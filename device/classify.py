"""Classify frames with a loaded model: preprocess, invoke, dequantize, top-k.

Small pure functions (``top_k``) plus one ``Classifier`` that owns a runtime. A classifier is
not thread-safe (LiteRT interpreters are not); the pipeline gives each worker its own.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .core.bundle import ModelSpec, resolve_model
from .core.errors import BundleError
from .core.preprocess import InputContract, prepare
from .runtimes import Runtime, TensorInfo
from .runtimes.choice import open_model
from .runtimes.tensors import dequantize

# Float models without a bundle are assumed to take MobileNet-style [-1, 1] inputs.
BARE_FLOAT_MEAN = 127.5
BARE_FLOAT_STD = 127.5


@dataclass(frozen=True)
class Prediction:
    """One class of a result: model output index, its label and a 0..1 score."""

    index: int
    label: str
    score: float

    def as_dict(self) -> dict:
        return {"index": self.index, "label": self.label, "score": round(self.score, 5)}


@dataclass(frozen=True)
class Classification:
    """Top-k predictions for one frame, best first, with per-stage latency in milliseconds."""

    top: tuple[Prediction, ...]
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def best(self) -> Prediction:
        return self.top[0]


def top_k(scores: np.ndarray, k: int, labels: tuple[str, ...], exclude: int | None = None) -> tuple[Prediction, ...]:
    """Best ``k`` entries of ``scores`` (ties broken by index), skipping the ``exclude`` index.

    The background output of the old ImageNet models is excluded: it is not a class anyone
    wants reported, and leaving it out lets a low top score mean "nothing recognised".
    """
    k = max(1, min(k, scores.shape[0] - (exclude is not None)))
    order = np.argsort(-scores, kind="stable")
    picked = []
    for index in order:
        if index == exclude:
            continue
        picked.append(
            Prediction(int(index), labels[index] if index < len(labels) else str(int(index)), float(scores[index]))
        )
        if len(picked) == k:
            break
    return tuple(picked)


PROBABILITY_FLOOR = 1e-7  # a uint8 softmax's 0 is "below 1/512", not "impossible": log() needs a floor


def looks_like_probabilities(scores: np.ndarray) -> bool:
    """True when ``scores`` (last axis) are non-negative and sum to about 1: a softmax output."""
    scores = np.asarray(scores, dtype=np.float64)
    # 0.05: an int8 softmax's dequantized row sums drift by a few quantization steps from 1
    return bool(np.all(scores >= 0) and np.all(np.abs(scores.sum(axis=-1) - 1.0) < 0.05))


def apply_temperature(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scaled probabilities: ``softmax(logits / T)`` over the last axis.

    A softmax output's logits are its log-probabilities up to a constant (which softmax
    ignores), so for probabilities the logits are ``log(max(p, floor))``; anything else (a
    model that outputs raw logits) is taken as the logits themselves. T > 1 softens
    over-confident scores, T < 1 sharpens; T = 1 is the identity on probabilities. The
    trainer fits T with this same function, so fit and device apply the same maths.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if looks_like_probabilities(scores):
        logits = np.log(np.maximum(scores, PROBABILITY_FLOOR))
    else:
        logits = scores
    z = logits / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def calibration_of(manifest: dict) -> float | None:
    """The bundle's fitted temperature (``calibration.temperature``), or None when it has none."""
    section = manifest.get("calibration")
    if not isinstance(section, dict) or section.get("temperature") in (None, 1, 1.0):
        return None
    return float(section["temperature"])


def thresholds_of(manifest: dict, labels: tuple[str, ...]) -> dict[int, float]:
    """The bundle's per-class score thresholds (``thresholds: {label: t}``) by output index."""
    section = manifest.get("thresholds")
    if not isinstance(section, dict):
        return {}
    return {labels.index(label): float(t) for label, t in section.items() if label in labels}


def contract_for(spec: ModelSpec, tensor: TensorInfo, fit: str | None = None) -> InputContract:
    """The input contract for a loaded model: the bundle's normalisation, the model's own dtype.

    For a bare quantized model the normalisation is taken to be the one its input quantization
    undoes (the convention of the TFLite example models: feed raw pixels).
    """
    _, height, width, _ = tensor.shape
    if spec.contract is not None:
        base = spec.contract
        contract = InputContract(
            height, width, tensor.dtype, tensor.scale, tensor.zero_point, base.mean, base.std, base.fit
        )
        if (base.height, base.width) != (height, width):
            raise BundleError(
                f"{spec.model_path}: model input is {height}x{width} but the manifest says {base.height}x{base.width}"
            )
    elif tensor.scale:
        pixel_zero = tensor.zero_point + (128 if tensor.dtype == "int8" else 0)
        contract = InputContract(
            height, width, tensor.dtype, tensor.scale, tensor.zero_point, mean=float(pixel_zero), std=1.0 / tensor.scale
        )
    elif tensor.dtype in ("uint8", "int8"):
        # Integer input with no quantization (e.g. tf2onnx of a quantized TFLite model): raw
        # pixels for uint8, pixels - 128 for int8.
        contract = InputContract(height, width, tensor.dtype, mean=128.0 if tensor.dtype == "int8" else 0.0, std=1.0)
    else:
        contract = InputContract(height, width, tensor.dtype, mean=BARE_FLOAT_MEAN, std=BARE_FLOAT_STD)
    return contract.with_fit(fit)


class Classifier:
    """A model ready to classify frames; build it with :meth:`open`."""

    def __init__(self, spec: ModelSpec, runtime: Runtime, fit: str | None = None, top_k: int = 3) -> None:
        self.spec = spec
        self.runtime = runtime
        self.contract = contract_for(spec, runtime.input, fit)
        self.k = top_k
        outputs = int(np.prod(runtime.output.shape[1:]))
        labels = spec.labels
        background = spec.background_index
        if not labels:
            labels = tuple(str(i) for i in range(outputs))
        elif len(labels) == outputs - 1 and spec.bundle_dir is None:
            # TF1 ImageNet models ship 1000 labels for 1001 outputs: output 0 is background.
            labels, background = ("background", *labels), 0
        if len(labels) != outputs:
            where = spec.bundle_dir / "labels.txt" if spec.bundle_dir else "the labels file"
            raise BundleError(f"{where}: {len(labels)} labels but {spec.model_path.name} has {outputs} outputs")
        self.labels = labels
        self.background_index = background
        # calibration from the bundle: scores are temperature-scaled so a 0.9 means nine in ten,
        # and a class scoring under its threshold is "not recognised" (predict, the daemon's state)
        self.temperature = calibration_of(spec.manifest)
        self.thresholds = thresholds_of(spec.manifest, labels)

    @classmethod
    def open(
        cls,
        model: str | Path | ModelSpec,
        labels: str | Path | None = None,
        *,
        runtime: str = "auto",
        num_threads: int | None = None,
        fit: str | None = None,
        top_k: int = 3,
        model_file: str | None = None,
    ) -> Classifier:
        """Load a bundle directory or a bare model (+ labels) on the named runtime (``auto``: fastest here).

        The runtime picks its file from the bundle (``model.onnx`` for onnx, ...); ``spec.model_path``
        of the result is the file actually running.
        """
        spec = model if isinstance(model, ModelSpec) else resolve_model(model, labels, model_file)
        loaded, model_path = open_model(spec, runtime, num_threads)
        if model_path != spec.model_path:
            spec = dataclasses.replace(spec, model_path=model_path)
        return cls(spec, loaded, fit=fit, top_k=top_k)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version

    def preprocess(self, frame: np.ndarray, order: str = "BGR") -> np.ndarray:
        """Frame (any size; BGR from OpenCV unless ``order='RGB'``) -> input tensor."""
        return prepare(frame, self.contract, order)

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Input tensor -> dequantized scores (temperature-scaled when the bundle is calibrated)."""
        scores = dequantize(self.runtime.infer(tensor), self.runtime.output)
        if self.temperature is not None:
            scores = apply_temperature(scores, self.temperature)
        return scores

    def accepted(self, prediction: Prediction, threshold: float | None = None) -> bool:
        """Whether ``prediction`` reaches ``threshold`` (all classes) or else its class's own threshold."""
        limit = threshold if threshold is not None else self.thresholds.get(prediction.index, 0.0)
        return prediction.score >= limit

    def predictions(self, scores: np.ndarray, k: int | None = None) -> tuple[Prediction, ...]:
        return top_k(scores, k or self.k, self.labels, self.background_index)

    def classify(self, frame: np.ndarray, order: str = "BGR", k: int | None = None) -> Classification:
        """Preprocess, infer and rank one frame, timing each stage."""
        t0 = time.perf_counter()
        tensor = self.preprocess(frame, order)
        t1 = time.perf_counter()
        scores = self.infer(tensor)
        t2 = time.perf_counter()
        top = self.predictions(scores, k)
        t3 = time.perf_counter()
        return Classification(
            top, {"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        )
