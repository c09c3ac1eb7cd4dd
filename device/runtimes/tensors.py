"""Raw model outputs to scores: the one NumPy-using helper every runtime's caller shares."""

from __future__ import annotations

import numpy as np

from .base import TensorInfo


def dequantize(raw: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Map a quantized output row to float scores (0..1 for a softmax output)."""
    if info.scale:
        return (raw.astype(np.float32) - info.zero_point) * info.scale
    if info.dtype in ("uint8", "int8"):
        # An integer output that lost its quantization (tf2onnx of a quantized TFLite model):
        # spread the integer range over 0..1 so scores and thresholds keep their meaning.
        low = np.iinfo(info.dtype).min
        return (raw.astype(np.float32) - low) / 255.0
    return raw.astype(np.float32, copy=False)
