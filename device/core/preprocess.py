"""The one definition of how a frame becomes a model input, shared by device, evaluator and trainer.

Training, evaluation and the device must fit and normalise frames identically, or the model that
ships is not the model that was measured. Everything here is plain NumPy/OpenCV so the device side
stays free of TensorFlow; the trainer calls these same functions.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from .errors import ImageError

Fit = Literal["centre", "stretch"]
FITS: tuple[str, ...] = ("centre", "stretch")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})


@dataclass(frozen=True)
class InputContract:
    """What the model's input tensor expects.

    ``mean``/``std`` describe the float graph: ``real = (pixel - mean) / std``. For a quantized
    input the tensor holds ``q = real / scale + zero_point``; ``scale == 0`` means a float input.
    """

    height: int
    width: int
    dtype: str = "uint8"  # uint8 | int8 | float32
    scale: float = 0.0
    zero_point: int = 0
    mean: float = 0.0
    std: float = 1.0
    fit: Fit = "centre"

    def with_fit(self, fit: str | None) -> InputContract:
        """Return a copy with another fit (any spelling :func:`normalise_fit` takes), or self when None.

        The spelling is settled here, where every override arrives, so no caller can hand
        ``center`` to :func:`fit_to_size` (which would then stretch).
        """
        if fit is None or normalise_fit(fit) == self.fit:
            return self
        return dataclasses.replace(self, fit=normalise_fit(fit))


def normalise_fit(name: str) -> Fit:
    """Accept British and American spellings (centre/center/crop) so configs are forgiving."""
    value = {"center": "centre", "crop": "centre"}.get(name, name)
    if value not in FITS:
        raise ValueError(f"unknown fit {name!r}; use centre or stretch")
    return value  # type: ignore[return-value]


def to_rgb(frame: np.ndarray, order: str = "BGR") -> np.ndarray:
    """Return an HxWx3 uint8 RGB view of a grey, BGR/RGB or BGRA/RGBA frame.

    OpenCV decodes and captures BGR while picamera2's RGB888 is already in RGB memory order for
    NumPy; the caller says which it has so no frame is converted twice.
    """
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[0], frame.shape[1]), cv2.COLOR_GRAY2RGB)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"cannot use a frame of shape {frame.shape}")
    if frame.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB if order == "BGR" else cv2.COLOR_RGBA2RGB
        return cv2.cvtColor(frame, code)
    if order == "BGR":
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return frame


def to_bgr(frame: np.ndarray, order: str = "BGR") -> np.ndarray:
    """Return a frame in OpenCV's BGR order for JPEG encoding (snapshots, captures, the preview).

    Grey frames become three channels, so what is saved looks like what was classified.
    """
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[0], frame.shape[1]), cv2.COLOR_GRAY2BGR)
    if order == "RGB":
        return cv2.cvtColor(frame, cv2.COLOR_RGBA2BGR if frame.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def fit_to_size(rgb: np.ndarray, height: int, width: int, fit: Fit = "centre") -> np.ndarray:
    """Centre-crop to the model's aspect ratio (or stretch) and resize with INTER_AREA."""
    h, w = rgb.shape[:2]
    if fit == "centre":
        target = width / height
        if w / h > target:  # too wide: trim the sides
            new_w = max(1, round(h * target))
            x0 = (w - new_w) // 2
            rgb = rgb[:, x0 : x0 + new_w]
        elif w / h < target:  # too tall: trim top and bottom
            new_h = max(1, round(w / target))
            y0 = (h - new_h) // 2
            rgb = rgb[y0 : y0 + new_h, :]
    if rgb.shape[0] == height and rgb.shape[1] == width:
        return np.ascontiguousarray(rgb)
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def quantize_pixels(rgb: np.ndarray, contract: InputContract) -> np.ndarray:
    """Convert fitted RGB uint8 pixels to the tensor dtype the model takes (no batch axis).

    The usual case, a quantized model whose input quantization undoes the normalisation,
    reduces to the raw pixels (uint8) or pixels - 128 (int8): that fast path is taken whenever
    the affine map is the identity up to 1 %, so a Pi does no float maths per frame.
    """
    if contract.dtype in ("float32", "float16"):
        return ((rgb.astype(np.float32) - contract.mean) / contract.std).astype(contract.dtype)
    # An integer input without quantization parameters takes its values as they are (scale 1).
    gain = 1.0 / (contract.std * (contract.scale or 1.0))
    offset = contract.zero_point - contract.mean * gain
    if abs(gain - 1.0) < 0.01 and abs(offset - round(offset)) < 0.5 + 1e-6:
        shift = int(round(offset))
        if contract.dtype == "uint8" and shift == 0:
            return rgb
        if contract.dtype == "int8" and shift == -128:
            return (rgb ^ 0x80).view(np.int8)  # x - 128 without a widening copy
    info = np.iinfo(contract.dtype)
    q = np.rint(rgb.astype(np.float32) * gain + offset)
    return np.clip(q, info.min, info.max).astype(contract.dtype)


def prepare(frame: np.ndarray, contract: InputContract, order: str = "BGR") -> np.ndarray:
    """Frame of any size/channels -> model input tensor with a batch axis of 1.

    The colour conversion runs after the crop and resize: both are per-channel, so the pixels
    are identical, and converting 224x224 instead of 1280x720 saves about 1 ms a frame.
    """
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    fitted = fit_to_size(frame, contract.height, contract.width, contract.fit)
    return quantize_pixels(to_rgb(fitted, order), contract)[np.newaxis, ...]


@contextmanager
def quiet_opencv():
    """Silence OpenCV's own log lines (cv2.utils.logging in OpenCV 4.5+ and 5; cv2.setLogLevel before)."""
    logging_api = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_api is not None and hasattr(logging_api, "getLogLevel"):
        previous = logging_api.getLogLevel()
        logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
        try:
            yield
        finally:
            logging_api.setLogLevel(previous)
    elif hasattr(cv2, "setLogLevel"):
        previous = cv2.setLogLevel(0)
        try:
            yield
        finally:
            cv2.setLogLevel(previous)
    else:
        yield


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to BGR uint8, refusing missing, non-image and truncated files.

    OpenCV silently returns the decoded part of a truncated JPEG (with a warning on stderr), so
    the file's end marker is checked as well: a truncated photo must not be classified as if it
    were whole.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: not a file")
    return decode_image(path.read_bytes(), str(path))


def decode_image(data: bytes, where: str = "upload") -> np.ndarray:
    """Decode image bytes (a file's or an HTTP upload's) to BGR uint8 with the same refusals.

    ``where`` names the source in the error message (a path, or e.g. ``upload``).
    """
    if not data:
        raise ImageError(f"{where}: empty file")
    if data[:3] == b"\xff\xd8\xff" and not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        raise ImageError(f"{where}: truncated JPEG (no end-of-image marker)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-32:]:
        raise ImageError(f"{where}: truncated PNG (no IEND chunk)")
    with quiet_opencv():
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{where}: not a readable image")
    return image


def list_images(paths: list[str | Path]) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image paths; refuse empties."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ImageError(f"{path}: no such file or directory")
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise ImageError(f"{path}: directory holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            found.extend(images)
        else:
            found.append(path)
    return found
