"""Grad-CAM heat maps: where in the photo the Keras model looked when it chose a class.

Computed from the float Keras model of the run (the .tflite has no gradients). The model made by
``model.build_model`` exposes its backbone, so the gradient of the class score with respect to
the last convolutional feature map is one ``GradientTape`` away.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .model import parts


def gradcam(model: Any, rgb: np.ndarray, class_index: int) -> np.ndarray:
    """Heat map in 0..1, the size of ``rgb`` (a fitted RGB uint8 image), for ``class_index``.

    Args:
        model: a Keras model from ``build_model`` (or loaded from the run's ``model.keras``).
        rgb: HxWx3 uint8, already fitted to the model's input size.
        class_index: the output whose evidence to show (usually the predicted class).
    Returns:
        float32 HxW map; 0 where nothing pushed towards the class.
    """
    import tensorflow as tf

    layers = parts(model)
    x = tf.convert_to_tensor(rgb[np.newaxis].astype(np.float32))
    with tf.GradientTape() as tape:
        conv = layers["backbone"](layers["normalise"](x), training=False)
        tape.watch(conv)
        probs = layers["classifier"](layers["dropout"](layers["pool"](conv), training=False))
        score = probs[:, class_index]
    grads = tape.gradient(score, conv)
    weights = tf.reduce_mean(grads, axis=(1, 2))
    cam = tf.nn.relu(tf.reduce_sum(conv * weights[:, tf.newaxis, tf.newaxis, :], axis=-1))[0].numpy()
    if cam.max() > 0:
        cam = cam / cam.max()
    return cv2.resize(cam.astype(np.float32), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The photo with the heat map blended on top (JET colours), RGB uint8."""
    colour = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    return np.uint8(np.clip(rgb * (1 - alpha) + colour * alpha, 0, 255))


def occlusion(classifier: Any, rgb: np.ndarray, class_index: int, patch: int = 0, stride: int = 0) -> np.ndarray:
    """Occlusion sensitivity in 0..1, the size of ``rgb``: how much a grey patch there lowers ``class_index``.

    Model-agnostic: it only runs the classifier (the device runtime, e.g. the shipped int8 model),
    so it explains what ships and works for third-party bundles with no gradients or Keras model.

    Args:
        classifier: an ``edgesight.device.classify.Classifier``.
        rgb: HxWx3 uint8, already fitted to the model's input size.
        class_index: the class whose score drop is recorded (the true class, for a mistake).
        patch: side of the grey square (default a fifth of the image); stride: step (default half a patch).
    Returns:
        float32 HxW map, 1 where covering the photo hurt the class most; 0 where it did not hurt.
    """
    h, w = rgb.shape[:2]
    patch = patch or max(4, min(h, w) // 5)
    stride = stride or max(1, patch // 2)
    base = float(classifier.infer(classifier.preprocess(rgb, "RGB"))[class_index])
    drop = np.zeros((h, w), np.float32)
    count = np.zeros((h, w), np.float32)
    for y in range(0, max(1, h - patch + stride), stride):
        for x in range(0, max(1, w - patch + stride), stride):
            covered = rgb.copy()
            covered[y : y + patch, x : x + patch] = 128
            score = float(classifier.infer(classifier.preprocess(covered, "RGB"))[class_index])
            drop[y : y + patch, x : x + patch] += max(0.0, base - score)
            count[y : y + patch, x : x + patch] += 1
    heat = drop / np.maximum(count, 1)
    return heat / heat.max() if heat.max() > 0 else heat
