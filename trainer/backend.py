"""Import TensorFlow and Keras once, without their start-up chatter on stderr.

TensorFlow's C++ side prints absl/oneDNN notices straight to file descriptor 2 while it loads,
whatever ``TF_CPP_MIN_LOG_LEVEL`` says. The CLI promises that a user error is exactly one line
on stderr, so the import runs with fd 2 pointed at /dev/null (unless debug logging is on).
Python exceptions are unaffected: they are raised, not printed, during the import.
"""

from __future__ import annotations

import logging
import os
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
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices say nothing a user can act on
    return tf, keras
