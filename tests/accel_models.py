"""A tiny real Keras classifier converted to float TFLite, int8 TFLite and ONNX, shared by the accelerator tests.

Built once per test session (TensorFlow conversion is the slow part) into a temp folder. The
model normalises inside its graph like the trainer's (``Rescaling``), so the bundle contract is
raw pixels (mean 0, std 1), and it is seeded so its answers differ per image.
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgesight.device.core.bundle import write_bundle
from edgesight.device.core.preprocess import InputContract, fit_to_size, read_image, to_rgb

ROOT = Path(__file__).resolve().parents[1]
FAKES = ROOT / "tests" / "fakes"
SIZE = 64
LABELS = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def fitted_images(images_dir: Path) -> list[np.ndarray]:
    """The shared photos, centre-cropped and resized to the model input (RGB uint8)."""
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in (".jpg", ".bmp", ".png"))
    return [fit_to_size(to_rgb(read_image(p)), SIZE, SIZE) for p in paths]


@lru_cache(maxsize=1)
def tiny_models(images_dir: Path) -> dict[str, Path]:
    """{"keras_float": float .tflite, "int8": int8 .tflite, "onnx": .onnx, "dir": folder}."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from edgesight.trainer.onnx_export import export_onnx

    out = Path(tempfile.mkdtemp(prefix="edgesight-accel-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    keras.utils.set_random_seed(7)
    pixels = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(pixels)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.Conv2D(24, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    # A wide head so an untrained model still answers differently per photo (3 classes over 6 photos).
    x = keras.layers.Dense(len(LABELS), kernel_initializer=keras.initializers.RandomNormal(stddev=10.0))(x)
    outputs = keras.layers.Softmax()(x)
    model = keras.Model(pixels, outputs)
    images = fitted_images(images_dir)

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    (out / "model_float.tflite").write_bytes(converter.convert())

    def representative():
        rng = np.random.default_rng(0)
        for image in images + [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(8)]:
            yield [image[np.newaxis].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    (out / "model.tflite").write_bytes(converter.convert())
    export_onnx(model, out / "model.onnx", SIZE)
    return {"float": out / "model_float.tflite", "int8": out / "model.tflite", "onnx": out / "model.onnx", "dir": out}


def make_bundle(models: dict[str, Path], out: Path, *, onnx: bool = True, edgetpu: Path | None = None) -> Path:
    """A real bundle: int8 default model, the float one, and optionally model.onnx / model_edgetpu.tflite."""
    files = {"model.tflite": models["int8"], "model_float.tflite": models["float"]}
    if onnx:
        files["model.onnx"] = models["onnx"]
    if edgetpu is not None:
        files["model_edgetpu.tflite"] = edgetpu
    contract = InputContract(SIZE, SIZE, "uint8", mean=0.0, std=1.0, fit="centre")
    return write_bundle(
        out,
        files,
        LABELS,
        name="tiny",
        version="1",
        contract=contract,
        architecture={"name": "tiny_cnn", "input_size": SIZE},
    )


def build_fake_libedgetpu(folder: Path) -> Path:
    """Compile the fake ``libedgetpu.so.1`` into ``folder`` (skips the test when no C compiler)."""
    import pytest

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the fake libedgetpu.so.1")
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / "libedgetpu.so.1"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", str(library), str(FAKES / "libedgetpu_fake.c")],
        check=True,
        capture_output=True,
    )
    return library


def install_fake_compiler(folder: Path) -> Path:
    """Put an ``edgetpu_compiler`` on a PATH folder that runs the fake with this interpreter."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "edgetpu_compiler"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKES / "edgetpu_compiler.py"}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script
