"""Latency of a candidate model on the user's device, estimated from a timing on this machine.

Each candidate is converted to the int8 TFLite model that would ship and its ``invoke()`` is
timed with the device runtime (LiteRT, 1 thread, median of many runs). To turn that into a
figure for another device, a *reference* model (MobileNetV2 1.0 at 224 px, float32) is timed
here the same way and compared with a published timing of the same model on the target:

    estimate(target) = measured_here(candidate) x published(target, reference) / measured_here(reference)

This assumes the candidate speeds up or slows down like the reference does, which holds
roughly for models of one family on CPUs with NEON/AVX; the results are labelled estimates,
and ``--target this`` reports the measured figure unscaled. The published figures use all cores
of the target (as the device daemon does by default), so the estimate is for that setting.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backend import quiet_stderr


@dataclass(frozen=True)
class Target:
    name: str
    reference_ms: float | None  # published MobileNetV2 1.0 224 float32 latency; None = this machine
    source: str


TARGETS: dict[str, Target] = {
    # XNNPACK README, "Raspberry Pi" table (benchmarked 12 Feb 2020, end2end-bench, multi-threaded,
    # Raspbian Buster): MobileNet v2 1.0X on RPi 4 (BCM2711) = 44 ms.
    # https://github.com/google/XNNPACK#raspberry-pi
    "pi4": Target("pi4", 44.0, "XNNPACK README, Raspberry Pi 4 (BCM2711), MobileNet v2 1.0X, 44 ms"),
    # No XNNPACK table for the Pi 5; Raspberry Pi Ltd's launch post ("Introducing Raspberry Pi 5",
    # 28 Sep 2023) gives "a 2-3x increase in CPU performance" over the Pi 4. 2.5x of 44 ms = 17.6 ms.
    "pi5": Target("pi5", 17.6, "Pi 4's 44 ms / 2.5 (Raspberry Pi 5 launch post: 2-3x Pi 4 CPU)"),
    # Jetson Orin Nano CPU (6x Cortex-A78AE, 1.5 GHz; NVIDIA Jetson Orin Nano datasheet). No
    # published TFLite CPU figure found: scaled from the Pi 5 (4x Cortex-A76, 2.4 GHz) by clock,
    # cores (6 vs 4) and Arm's stated ~+20% A78-over-A76 per-clock performance:
    # 17.6 x (2.4/1.5) x (4/6) / 1.2 = 15.6 ms. The roughest entry of the table.
    "jetson-orin-nano": Target(
        "jetson-orin-nano", 15.6, "Pi 5 figure scaled by clock, core count and Arm's A78 vs A76 gain (rough)"
    ),
    "this": Target("this", None, "measured on this machine, not scaled"),
}


def tflite_int8(model: Any, calibration: np.ndarray, verbose: bool = False) -> bytes:
    """The full-integer int8 TFLite model export would ship, calibrated on a few images."""
    from .export import convert

    with tempfile.TemporaryDirectory(prefix="edgesight-tune-") as tmp:
        saved = Path(tmp) / "saved_model"
        with quiet_stderr(verbose):
            model.export(str(saved), format="tf_saved_model", verbose=False)
            return convert(saved, "int8", "uint8", calibration)


def tflite_float(model: Any, verbose: bool = False) -> bytes:
    import tensorflow as tf

    with quiet_stderr(verbose):
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def invoke_ms(model_bytes: bytes, runs: int = 30, warmup: int = 3) -> float:
    """Median ``invoke()`` time in ms with the device's LiteRT runtime on 1 thread."""
    from ..device.runtimes.litert import find_litert, quiet_native_stderr

    with quiet_native_stderr():
        interpreter = find_litert().interpreter_class(model_content=model_bytes, num_threads=1)
        interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        interpreter.invoke()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000.0)
    return float(statistics.median(times))


def reference_ms_here(runs: int = 20) -> float:
    """This machine's time for the reference model (MobileNetV2 1.0, 224 px, float32, random weights)."""
    import keras

    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, weights=None)
    return invoke_ms(tflite_float(model), runs=runs)


def scale(measured_ms: float, target: Target, reference_here_ms: float | None) -> float:
    """The estimated target latency of a model measured here at ``measured_ms``."""
    if target.reference_ms is None or not reference_here_ms:
        return measured_ms
    return measured_ms * target.reference_ms / reference_here_ms
