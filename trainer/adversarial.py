"""Adversarial examples: FGSM and PGD on the float Keras model, their transfer to what ships, FGSM training.

Attacks need gradients, so they run on the run's Keras model (``model.keras``), on photos
already fitted to its input (RGB, 0..255). The attacked images are rounded to uint8 — a camera
frame is uint8 — and those *same* images are then fed to every shipped variant through the
device runtime: the int8 model's accuracy there is the transfer figure (a black-box attacker
with the float model in hand). ε is in pixel levels over 255, as in the literature: ε = 8/255
moves each pixel by at most 8 levels.

``train --adversarial EPS`` uses :func:`adversarial_model` in phase 2 (fine-tuning, on
pixels): each batch is trained on half clean, half FGSM images made at that step against the
current weights. Phase 1 trains the head on cached backbone features, where no pixel exists
to perturb, so it stays clean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_EPSILONS = (1, 2, 4, 8)  # in pixel levels; ε = level / 255
PGD_STEPS = 7


def _gradient_sign(model: Any, x: Any, y: Any) -> Any:
    """sign(d loss / d x) for one batch (float32 pixels, integer targets)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        probs = model(x, training=False)
        loss = tf.keras.losses.sparse_categorical_crossentropy(y, probs)
    return tf.sign(tape.gradient(loss, x))


def fgsm(model: Any, x: np.ndarray, y: np.ndarray, levels: float, batch_size: int = 32) -> np.ndarray:
    """Fast gradient sign method: one step of ``levels`` pixel levels; uint8 images."""
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].astype(np.float32)
        step = _gradient_sign(model, xb, y[i : i + batch_size]).numpy()
        out.append(np.clip(np.round(xb + levels * step), 0, 255).astype(np.uint8))
    return np.concatenate(out) if out else x.astype(np.uint8)


def pgd(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    levels: float,
    *,
    steps: int = PGD_STEPS,
    seed: int = 0,
    batch_size: int = 32,
) -> np.ndarray:
    """Projected gradient descent (L∞ ball of ``levels``), random start, step 2.5·ε/steps; uint8 images."""
    rng = np.random.default_rng(seed)
    alpha = 2.5 * levels / steps
    out = []
    for i in range(0, len(x), batch_size):
        clean = x[i : i + batch_size].astype(np.float32)
        yb = y[i : i + batch_size]
        adv = np.clip(clean + rng.uniform(-levels, levels, clean.shape), 0, 255).astype(np.float32)
        for _ in range(steps):
            adv = adv + alpha * _gradient_sign(model, adv, yb).numpy()
            adv = np.clip(np.clip(adv, clean - levels, clean + levels), 0, 255)
        # round to whole levels, still inside the ball (clean is whole, so rounding cannot leave it)
        out.append(np.clip(np.round(adv), 0, 255).astype(np.uint8))
    return np.concatenate(out) if out else x.astype(np.uint8)


def keras_accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    probs = model.predict(x.astype(np.float32), batch_size=32, verbose=0)
    return round(float(np.mean(np.argmax(probs, axis=1) == y)), 4)


def attack_sweep(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    variants: Sequence[Any] = (),
    *,
    epsilons: Sequence[float] = DEFAULT_EPSILONS,
    steps: int = PGD_STEPS,
) -> dict[str, Any]:
    """Float (Keras) accuracy under FGSM and PGD per ε, and each variant's accuracy on the same images.

    Args:
        model: the run's Keras model (RGB 0..255 input).
        x: fitted RGB uint8 images [N, size, size, 3]; y: integer targets.
        variants: ``robustness.Variant`` items (device-runtime classifiers of the bundle files).
    Returns:
        ``{"epsilons": [levels], "keras_clean", "attacks": {"fgsm"|"pgd": {"keras": {eps: acc},
        "transfer": {file: {eps: acc}}}}, "pgd_steps"}``; ε keys are strings of pixel levels.
    """
    from .measure import score_frames

    def device_accuracy(v: Any, images: np.ndarray) -> float:
        scores = score_frames(v.classifier, list(images), order="RGB")
        return round(float(np.mean(scores.argmax(axis=1) == y)), 4)

    result: dict[str, Any] = {
        "epsilons": [float(e) for e in epsilons],
        "epsilon_unit": "pixel levels out of 255",
        "pgd_steps": steps,
        "images": int(len(y)),
        "keras_clean": keras_accuracy(model, x, y),
        "device_clean": {v.file: device_accuracy(v, x) for v in variants},
        "attacks": {},
    }
    for name in ("fgsm", "pgd"):
        block: dict[str, Any] = {"keras": {}, "transfer": {v.file: {} for v in variants}}
        for eps in epsilons:
            adv = fgsm(model, x, y, eps) if name == "fgsm" else pgd(model, x, y, eps, steps=steps)
            key = f"{eps:g}"
            block["keras"][key] = keras_accuracy(model, adv, y)
            for v in variants:
                block["transfer"][v.file][key] = device_accuracy(v, adv)
        result["attacks"][name] = block
    return result


def adversarial_model(model: Any, levels: float) -> Any:
    """A Keras model sharing ``model``'s layers whose ``train_step`` adds FGSM images of ``levels`` to each batch.

    Fit it instead of ``model`` (same weights, so ``model`` learns); callbacks that save weights see
    the same variables. The loss and metrics are over the clean and adversarial halves together.
    """
    import keras
    import tensorflow as tf

    class FGSMTrainer(keras.Model):
        def __init__(self, inner: Any, eps: float) -> None:
            super().__init__(name=f"{inner.name}_fgsm")
            self.inner = inner
            self.eps = float(eps)

        def call(self, inputs: Any, training: bool = False) -> Any:
            return self.inner(inputs, training=training)

        def train_step(self, data: Any) -> dict[str, Any]:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            with tf.GradientTape() as attack:
                attack.watch(x)
                loss = self.compute_loss(x=x, y=y, y_pred=self.inner(x, training=False), sample_weight=sample_weight)
            adv = tf.clip_by_value(x + self.eps * tf.sign(attack.gradient(loss, x)), 0.0, 255.0)
            both_x = tf.concat([x, tf.stop_gradient(adv)], axis=0)
            both_y = tf.concat([y, y], axis=0)
            both_w = None if sample_weight is None else tf.concat([sample_weight, sample_weight], axis=0)
            with tf.GradientTape() as tape:
                y_pred = self.inner(both_x, training=True)
                loss = self.compute_loss(x=both_x, y=both_y, y_pred=y_pred, sample_weight=both_w)
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply(grads, self.trainable_variables)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(both_y, y_pred, sample_weight=both_w)
            return {m.name: m.result() for m in self.metrics}

    trainer = FGSMTrainer(model, levels)
    trainer.build(model.input_shape)
    return trainer
