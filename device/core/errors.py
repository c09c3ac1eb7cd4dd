"""Errors a user can cause; the CLI turns each into one line on stderr and an exit code."""

from __future__ import annotations


class EdgesightError(Exception):
    """A problem with the user's input (a path, an image, a model, a bundle, a broker).

    The message is shown as-is on one line, so it must say which file or key is wrong and why.
    """

    exit_code = 1


class UsageError(EdgesightError):
    """Wrong flags or a bad config file: exit code 2, like argparse."""

    exit_code = 2


class ConfigError(UsageError):
    """A config key that is unknown, of the wrong type or out of range."""


class BundleError(EdgesightError):
    """A model bundle or model file that cannot be trusted or loaded."""


class ImageError(EdgesightError):
    """An image file that is missing, not an image, or truncated."""


class SourceError(EdgesightError):
    """A frame source (camera, stream, file, folder) that cannot be opened."""
