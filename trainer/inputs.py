"""Model inputs built with the device's own preprocessing, so what is trained is what runs.

Every image is decoded with ``read_photo`` (OpenCV's decoder, as on the device, behind the
same checks as ``data import``), fitted with ``fit_to_size`` and turned RGB with ``to_rgb``
exactly as on the device, once, into a uint8 array. Training a few thousand
photos at 96-224 px fits in memory, and decoding once instead of every epoch is most of what
makes CPU training quick. Augmentation runs on those arrays in ``tf.data``; it is not part of
the exported model.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..device.core.preprocess import Fit, fit_to_size, to_rgb
from .images import read_photo

log = logging.getLogger(__name__)


def fitted_image(path: Path, size: int, fit: Fit) -> np.ndarray:
    """One file -> HxWx3 RGB uint8, fitted like the device fits a camera frame.

    Fitted first, then converted, as ``prepare`` does: the same pixels, and the colour
    conversion runs on size x size pixels instead of the whole photo.
    """
    return to_rgb(fit_to_size(read_photo(path), size, size, fit))


def load_images(paths: list[Path], size: int, fit: Fit, workers: int | None = None) -> np.ndarray:
    """Decode and fit many files in parallel (OpenCV releases the GIL) -> [N, size, size, 3] uint8."""
    from tqdm import tqdm

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        images = pool.map(lambda p: fitted_image(p, size, fit), paths)
        for i, image in enumerate(
            tqdm(images, total=len(paths), desc="loading", unit="img", leave=False, disable=None)
        ):
            out[i] = image
    return out


def augmenter(cfg: Any) -> Any | None:
    """Keras augmentation layers from the config, or None when augmentation is off."""
    import keras

    strength = cfg.augment
    if strength <= 0:
        return None
    layers = []
    if cfg.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=cfg.seed))
    if cfg.rotation:
        layers.append(keras.layers.RandomRotation(cfg.rotation * strength, fill_mode="reflect", seed=cfg.seed))
    if cfg.zoom:
        layers.append(keras.layers.RandomZoom((-cfg.zoom * strength, 0.0), fill_mode="reflect", seed=cfg.seed))
    if cfg.contrast:
        layers.append(
            keras.layers.RandomContrast(min(1.0, cfg.contrast * strength), value_range=(0, 255), seed=cfg.seed)
        )
    if cfg.brightness:
        layers.append(
            keras.layers.RandomBrightness(min(1.0, cfg.brightness * strength), value_range=(0, 255), seed=cfg.seed)
        )
    return keras.Sequential(layers, name="augment") if layers else None


def make_dataset(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool = False, augment: Any = None, seed: int = 0
) -> Any:
    """A batched ``tf.data.Dataset`` of (float32 pixels 0..255, label), augmented when asked."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size).map(lambda a, b: (tf.cast(a, tf.float32), b), num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        data = data.map(
            lambda a, b: (tf.clip_by_value(augment(a, training=True), 0.0, 255.0), b),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return data.prefetch(tf.data.AUTOTUNE)
