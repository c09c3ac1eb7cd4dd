"""The trainer's judge of a photo file: is it a real, whole, decodable image of sane size?

Three answers, kept apart because they call for different actions:

- a photo: the BGR frame (decoded by OpenCV, the device's decoder) and the file's bytes;
- :class:`ImageFault`: the *image* is bad (not an image, truncated, animated, an icon, larger
  than the pixel limit): ``data import`` moves such a file aside as a reject;
- :class:`OSError` (``PermissionError``, I/O error): the *file cannot be read*; nothing is known
  about the image, so it is reported and left where it is, never moved.

Dimensions are read from the header before any pixel is decoded, so a small PNG that claims
30000x30000 is refused in microseconds instead of allocating gigabytes. Truncation is found by
a full decode (Pillow reports a short stream); bytes after a JPEG's end-of-image marker (phone
metadata trailers) are not a fault.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from ..device.core.errors import ImageError
from ..device.core.preprocess import quiet_opencv

DEFAULT_MAX_PIXELS = 50_000_000


class ImageFault(Exception):
    """A fault of the image itself; the message is the reason, without the path."""


def _pillow() -> Any:
    from PIL import Image

    # Our own limit (checked from the header before any decode) replaces Pillow's, whose
    # DecompressionBombError would otherwise end an import with a traceback.
    Image.MAX_IMAGE_PIXELS = None
    return Image


def _megapixels(pixels: float) -> str:
    return f"{pixels / 1e6:g} megapixels"


def header_fault(handle: IO[bytes], max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """A reason to refuse the file from its header alone, or None to go on and decode it."""
    Image = _pillow()
    from PIL import UnidentifiedImageError

    try:
        with Image.open(handle) as image:
            fmt = image.format or ""
            width, height = image.size
            frames = getattr(image, "n_frames", 1)
    except UnidentifiedImageError:
        return "not an image file"
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        return f"unreadable image ({exc})"
    if fmt == "GIF" and frames > 1:
        return f"animated GIF ({frames} frames)"
    if fmt == "ICO":
        return "ICO icon file"
    if width * height > max_pixels:
        return (
            f"too large ({width}x{height} = {_megapixels(width * height)}; "
            f"the limit is {_megapixels(max_pixels)}, --max-pixels)"
        )
    return None


def _whole_fault(data: bytes) -> str | None:
    """Decode every pixel with Pillow: a truncated stream is an error there, not a grey band."""
    Image = _pillow()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        text = str(exc)
        if "truncated" in text or isinstance(exc, EOFError):
            kind = "JPEG" if data[:3] == b"\xff\xd8\xff" else "PNG" if data[:4] == b"\x89PNG" else "image"
            return f"truncated {kind} ({text or 'stream ends early'})"
        return f"unreadable image ({text})"
    return None


def load_photo(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, bytes]:
    """(BGR frame, file bytes) of a whole image file.

    Raises:
        ImageFault: the image is bad (the reason says why).
        OSError: the file could not be opened or read (permissions, I/O); not the image's fault.
    """
    with open(path, "rb") as handle:
        reason = header_fault(handle, max_pixels)
        if reason is not None:
            raise ImageFault(reason)
        handle.seek(0)
        data = handle.read()
    if not data:
        raise ImageFault("empty file")
    reason = _whole_fault(data)
    if reason is not None:
        raise ImageFault(reason)
    with quiet_opencv():
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise ImageFault("not a readable image")
    return frame, data


def read_photo(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """BGR frame of an image file for training and evaluation; any problem is one ImageError line.

    The same judge as ``data import``, so a file the import kept (a JPEG with a metadata
    trailer, say) is never refused later by a stricter check.
    """
    try:
        frame, _ = load_photo(path, max_pixels)
    except ImageFault as exc:
        raise ImageError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return frame
