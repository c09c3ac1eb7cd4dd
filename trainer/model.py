"""The classifier: a MobileNet backbone with a small head, taking RGB pixels 0..255.

The graph normalises its own input (``Rescaling(1/127.5, offset=-1)``), so the bundle's
contract is simply "fitted RGB pixels" (mean 0, std 1) and the int8 model's input quantization
comes out as about (1.0, -128): the device then feeds raw pixels with no float maths. The parts
are named (``normalise``, ``backbone``, ``pool``, ``dropout``, ``classifier``) so the trainer can
cache backbone features and Grad-CAM can reach the last convolution.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..device.core.errors import EdgesightError

log = logging.getLogger(__name__)


def _backbone(cfg: Any) -> Any:
    import keras

    shape = (cfg.size, cfg.size, 3)
    weights = cfg.weights
    if weights == "none":
        log.warning(
            "--weights none: the backbone starts from random weights; expect poor accuracy "
            "unless the dataset is large (use imagenet or a local weights file)"
        )
    keras_weights = {"imagenet": "imagenet", "none": None}.get(weights)
    common = dict(input_shape=shape, alpha=cfg.alpha, include_top=False, weights=keras_weights)
    if cfg.arch == "mobilenet_v2":
        build = keras.applications.MobileNetV2
    else:
        build = (
            keras.applications.MobileNetV3Small
            if cfg.arch == "mobilenet_v3_small"
            else keras.applications.MobileNetV3Large
        )
        common["include_preprocessing"] = False  # the shared normalise layer does the same scaling
    try:
        backbone = build(**common)
    except Exception as exc:  # noqa: BLE001 - keras raises ValueError/OSError/URL errors alike
        if weights == "imagenet":
            raise EdgesightError(
                f"could not get the ImageNet weights for {cfg.arch} alpha {cfg.alpha} at "
                f"{cfg.size} px ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                "offline, pass --weights PATH"
            ) from None
        raise EdgesightError(f"{cfg.arch} alpha {cfg.alpha} at {cfg.size} px: {exc}") from None
    if keras_weights is None and weights != "none":
        try:
            backbone.load_weights(str(Path(weights)))
        except Exception as exc:  # noqa: BLE001 - h5py/keras raise many types for a wrong file
            raise EdgesightError(
                f"{weights}: does not load into {cfg.arch} alpha {cfg.alpha} without top "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
            ) from None
    return backbone


def build_model(cfg: Any, num_classes: int) -> Any:
    """Pixels [N, size, size, 3] float 0..255 -> class probabilities [N, num_classes]."""
    import keras

    backbone = _backbone(cfg)
    pixels = keras.Input((cfg.size, cfg.size, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalise")(pixels)
    x = backbone(x, training=False)  # inference-mode BatchNorm (set_trainable keeps BN layers frozen too)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(cfg.dropout, seed=cfg.seed, name="dropout")(x)
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        name="classifier",
        kernel_regularizer=keras.regularizers.L2(cfg.l2) if cfg.l2 else None,
    )(x)
    return keras.Model(pixels, outputs, name=f"{cfg.arch}_{cfg.alpha:g}_{cfg.size}")


def parts(model: Any) -> dict[str, Any]:
    """The named layers of a model made by :func:`build_model` (also after a save/load)."""
    names = ("normalise", "pool", "dropout", "classifier")
    found = {name: model.get_layer(name) for name in names}
    found["backbone"] = next(layer for layer in model.layers if hasattr(layer, "layers") and layer.layers)
    return found


def feature_model(model: Any) -> Any:
    """Pixels -> pooled backbone features (phase 1 trains the head on these, computed once)."""
    import keras

    p = parts(model)
    pixels = keras.Input(model.input_shape[1:])
    return keras.Model(pixels, p["pool"](p["backbone"](p["normalise"](pixels), training=False)))


def head_model(model: Any) -> Any:
    """Pooled features -> probabilities, sharing the head layers (and weights) of ``model``."""
    import keras

    p = parts(model)
    features = keras.Input(p["pool"].output.shape[1:] if hasattr(p["pool"], "output") else (None,))
    return keras.Model(features, p["classifier"](p["dropout"](features)))


def set_trainable(model: Any, top_layers: int | None) -> None:
    """Freeze the backbone (``None`` or 0), or unfreeze its top ``top_layers`` layers."""
    backbone = parts(model)["backbone"]
    if not top_layers:
        backbone.trainable = False
        return
    import keras

    backbone.trainable = True
    for layer in backbone.layers[:-top_layers]:
        layer.trainable = False
    for layer in backbone.layers[-top_layers:]:
        # Keras 3 runs a trainable BatchNormalization on batch statistics whenever the model trains,
        # whatever ``training=False`` said when it was wired; on a few hundred photos that wrecks
        # the pretrained statistics. A frozen BN layer always uses its moving averages.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
