"""Export the trained Keras model to ONNX (for TensorRT on a Jetson) and check it against the float TFLite.

tf2onnx's ``convert.from_keras`` traces the Keras 3 model through a ``tf.function`` and works
with TensorFlow 2.21 here (checked: MobileNetV2 exports and matches Keras to float precision).
Keras' own ``model.export(path, format="onnx")`` goes through the same tf2onnx code, so there
is no second route worth keeping. The check runs both models through the *device* runtimes
(onnxruntime, LiteRT) with the device's preprocessing, so it measures what a Jetson and a Pi
would actually compute, not what Keras computes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..device.core.errors import EdgesightError
from ..device.core.preprocess import InputContract, quantize_pixels
from ..device.runtimes import dequantize, open_runtime

log = logging.getLogger(__name__)

OPSET = 13  # TensorRT 8.x/10.x and onnxruntime all take 13; newer opsets add nothing a CNN needs
INPUT_NAME = "input"


def export_onnx(model: Any, out_path: Path, input_size: int) -> Path:
    """Convert a Keras image classifier to ONNX with a dynamic batch axis and NHWC float input.

    Args:
        model: the Keras model (float, before quantization).
        out_path: where to write ``model.onnx``.
        input_size: side of the square input in pixels.

    Returns:
        ``out_path``.
    """
    import tensorflow as tf
    import tf2onnx

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    signature = (tf.TensorSpec((None, input_size, input_size, 3), tf.float32, name=INPUT_NAME),)
    try:
        tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET, output_path=str(out_path))
    except Exception as exc:  # tf2onnx raises whatever the graph rewriting hit; keep it to one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgesightError(f"{out_path}: ONNX export failed ({reason})") from None
    log.info("wrote %s (%d KiB, opset %d)", out_path, out_path.stat().st_size // 1024, OPSET)
    return out_path


def _scores(runtime: Any, rgb: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Normalise/quantize one fitted RGB image for ``runtime``'s input and return 0..1 scores."""
    info = runtime.input
    contract = InputContract(info.shape[1], info.shape[2], info.dtype, info.scale, info.zero_point, mean, std)
    tensor = quantize_pixels(rgb, contract)[np.newaxis, ...]
    return dequantize(runtime.infer(tensor), runtime.output)


def compare_with_tflite(
    onnx_path: Path, tflite_path: Path, images: list[np.ndarray], *, mean: float = 0.0, std: float = 1.0
) -> dict:
    """Run the ONNX model (onnxruntime) and a TFLite model (LiteRT) on the same images; compare.

    Args:
        images: RGB uint8 HxWx3 images already fitted to the model's input size.
        mean, std: the float graph's normalisation ``(pixel - mean) / std`` (the bundle's
            ``input.mean``/``input.std``). The default 0/1 feeds raw pixels, right for edgesight's
            models, which normalise inside the graph (``Rescaling``).

    Returns:
        ``{"images", "top1_agreement", "max_score_diff", "mean_score_diff", "onnxruntime", "litert"}``:
        the share of images whose top-1 class agrees and the largest absolute score difference.
    """
    if not images:
        raise EdgesightError("compare_with_tflite needs at least one image")
    onnx_rt = open_runtime("onnx", onnx_path, num_threads=1)
    tflite_rt = open_runtime("litert", tflite_path, num_threads=1)
    agree, diffs = 0, []
    for rgb in images:
        a = _scores(onnx_rt, rgb, mean, std)
        b = _scores(tflite_rt, rgb, mean, std)
        if a.shape != b.shape:
            raise EdgesightError(f"{onnx_path}: {a.shape[0]} outputs but {tflite_path.name} has {b.shape[0]}")
        agree += int(np.argmax(a) == np.argmax(b))
        diffs.append(float(np.max(np.abs(a - b))))
    result = {
        "images": len(images),
        "top1_agreement": agree / len(images),
        "max_score_diff": max(diffs),
        "mean_score_diff": float(np.mean(diffs)),
        "onnxruntime": onnx_rt.version,
        "litert": f"{tflite_rt.name} {tflite_rt.version}",
    }
    log.info(
        "ONNX vs %s on %d images: top-1 agreement %.3f, max score difference %.5f",
        Path(tflite_path).name,
        len(images),
        result["top1_agreement"],
        result["max_score_diff"],
    )
    return result
