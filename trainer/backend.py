"""Import TensorFlow and Keras once, without their start-up chatter on stderr.

TensorFlow's C++ side prints absl/oneDNN notices straight to file descriptor 2 while it loads,
whatever ``TF_CPP_MIN_LOG_LEVEL`` says. The CLI promises that a user error is exactly one line
on stderr, so the import runs with fd 2 pointed at /dev/null (unless debug logging is on).
Python exceptions are unaffected: they are raised, not printed, during the import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any


def load_tensorflow() -> tuple[Any, Any]:
    """Return ``(tensorflow, keras)``, importing them quietly the first time."""
    quiet = not logging.getLogger().isEnabledFor(logging.DEBUG)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved = devnull = -1
    if quiet:
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    try:
        import keras
        import tensorflow as tf
    finally:
        if quiet:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    if quiet:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices say nothing a user can act on
    return tf, keras


STRATEGIES = ("auto", "mirrored", "default")


def choose_strategy(mode: str) -> Any:
    """The ``tf.distribute`` strategy for ``--strategy``: TensorFlow's own engine, nothing home-made.

    auto: ``MirroredStrategy`` when more than one GPU is visible, else the default (one device).
    mirrored: ``MirroredStrategy`` over every GPU, or over every logical CPU device when there
    are fewer than two GPUs (what the test uses, with two logical CPUs). default: one device.
    Models are built and compiled inside ``strategy.scope()``; the global batch is the per-device
    ``batch_size`` times ``num_replicas_in_sync``.
    """
    tf, _ = load_tensorflow()
    if mode not in STRATEGIES:
        from ..device.core.errors import UsageError

        raise UsageError(f"--strategy {mode!r}: use {', '.join(STRATEGIES)}")
    gpus = tf.config.list_logical_devices("GPU")
    if mode == "default" or (mode == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = [d.name for d in gpus] if len(gpus) >= 2 else [d.name for d in tf.config.list_logical_devices("CPU")]
    logging.getLogger(__name__).info("MirroredStrategy over %s", ", ".join(devices))
    return tf.distribute.MirroredStrategy(devices=devices)


@contextlib.contextmanager
def quiet_stderr(verbose: bool | None = None) -> Iterator[None]:
    """Point fd 2 at /dev/null around chatty C++ code (the TFLite converter's ``fully_quantize: 0, ...``).

    Unless ``verbose`` (default: debug logging is on). Python exceptions still propagate.
    """
    if verbose is None:
        verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    if verbose:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
