"""The one definition of how a frame becomes a model input, shared by device, evaluator and trainer.

Training, evaluation and the device must fit and normalise frames identically, or the model that
ships is not the model that was measured. Everything here is plain NumPy/OpenCV so the device side
stays free of TensorFlow; the trainer calls these same functions.
"""

from __future__ import annotations

import dataclasses
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from .errors import ConfigError, ImageError
from .image_header import HeaderError, ImageHeader, jpeg_is_complete, png_problem, read_header

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


DEFAULT_MAX_PIXELS = 50_000_000
"""Largest image (width x height) decoded unless configured otherwise: a 50 MP photo decodes to
150 MB of BGR, which a 1 GB Pi survives; cameras and phones stay well below it."""
MAX_PIXELS_ENV = "EDGESIGHT_MAX_IMAGE_PIXELS"
MAX_BYTES_PER_PIXEL = 16
"""No image within the pixel limit needs more bytes than this per pixel (16-bit RGBA TIFF is 8,
float PFM 12), so a longer file is refused before it is read into memory."""
MAX_EXTRA_BYTES = 16 << 20  # metadata (EXIF, ICC, thumbnails) on top of the pixels
_HEAD_BYTES = 64 << 10  # enough for every header :mod:`image_header` reads, in all usual files


def max_image_pixels(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` when given, else ``$EDGESIGHT_MAX_IMAGE_PIXELS``, else the default.

    A limit that is not a positive whole number is a configuration error (exit 2), not a bad image.
    """
    if max_pixels is not None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
            raise ConfigError(f"max_pixels: expected a whole number of pixels >= 1, got {max_pixels!r}")
        return max_pixels
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = float(raw) if any(c in raw for c in ".eE") else int(raw)
    except ValueError:
        value = 0
    if not (isinstance(value, int) or (math.isfinite(value) and value == int(value))) or value < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV}: expected a whole number of pixels >= 1 (e.g. 50000000), got {raw!r}")
    return int(value)


def _max_bytes(limit: int) -> int:
    return limit * MAX_BYTES_PER_PIXEL + MAX_EXTRA_BYTES


def check_header(data: bytes, where: str, max_pixels: int | None = None) -> ImageHeader:
    """Read the size ``data`` declares and refuse it, in one line naming ``where``, above the limit.

    Nothing is decoded: this is what keeps a 875 KB PNG that claims 30000x30000 pixels from
    taking gigabytes. Unknown formats are refused too, since their size cannot be checked first.
    """
    limit = max_image_pixels(max_pixels)
    try:
        header = read_header(data)
    except HeaderError as exc:
        raise ImageError(f"{where}: not a readable image ({exc})") from None
    if header is None:
        raise ImageError(f"{where}: not a readable image (unknown format)")
    if header.width < 1 or header.height < 1:
        raise ImageError(
            f"{where}: not a readable image ({header.format} declares {header.width}x{header.height} pixels)"
        )
    if header.pixels > limit:
        raise ImageError(
            f"{where}: {header.format} of {header.width}x{header.height} pixels "
            f"({header.pixels / 1e6:.0f} megapixels) is over the limit of {limit / 1e6:g} megapixels "
            f"(set {MAX_PIXELS_ENV} to change it)"
        )
    return header


def read_image(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file to BGR uint8, refusing missing, non-image, truncated and oversized files.

    The header is read and checked against the pixel limit before the rest of the file is read,
    and a file longer than any image within the limit could be is refused without reading it.
    """
    path = Path(path)
    limit = max_image_pixels(max_pixels)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: not a file")
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > _max_bytes(limit):
                raise ImageError(
                    f"{path}: file of {size / 1e6:.0f} MB is too large for an image of at most "
                    f"{limit / 1e6:g} megapixels (set {MAX_PIXELS_ENV} to change it)"
                )
            head = handle.read(_HEAD_BYTES)
            if len(head) == _HEAD_BYTES:  # a big file: refuse by its header before reading it all
                try:
                    header = read_header(head)
                except HeaderError:
                    header = None  # perhaps only cut by the head's end: judged on the whole file below
                if header is not None:
                    check_header(head, str(path), limit)
                data = head + handle.read()
            else:
                data = head
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image(data, str(path), max_pixels=limit)


def _decoder_message(exc: BaseException) -> str:
    """OpenCV's multi-line error text as a few words: the part after ``error:``, on one line."""
    text = str(exc)
    if "error:" in text:
        text = text.split("error:", 1)[1]
    text = " ".join(text.split())
    return text[:160] or type(exc).__name__


def decode_image(data: bytes, where: str = "upload", *, max_pixels: int | None = None) -> np.ndarray:
    """Decode image bytes (a file's or an HTTP upload's) to BGR uint8 with the same refusals.

    ``where`` names the source in the error message (a path, or e.g. ``upload``). Every way the
    bytes can be wrong (empty, unknown format, malformed or truncated, over the pixel limit, or
    refused by the decoder itself) ends in one :class:`ImageError` line naming ``where``.
    """
    limit = max_image_pixels(max_pixels)
    if not data:
        raise ImageError(f"{where}: empty file")
    if len(data) > _max_bytes(limit):
        raise ImageError(
            f"{where}: {len(data) / 1e6:.0f} MB is too large for an image of at most {limit / 1e6:g} megapixels"
        )
    header = check_header(data, where, limit)
    if header.format == "JPEG" and not jpeg_is_complete(data):
        raise ImageError(f"{where}: truncated JPEG (no end-of-image marker)")
    if header.format == "PNG":
        problem = png_problem(data)
        if problem:
            raise ImageError(f"{where}: {problem}")
    try:
        with quiet_opencv():
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageError(f"{where}: not a readable image (decoder: {_decoder_message(exc)})") from None
    except MemoryError:
        raise ImageError(f"{where}: not enough memory to decode {header.width}x{header.height} pixels") from None
    if image is None or image.size == 0:
        raise ImageError(f"{where}: not a readable image")
    if image.shape[0] * image.shape[1] > limit:  # a header that understated the size
        raise ImageError(f"{where}: decoded to {image.shape[1]}x{image.shape[0]} pixels, over the limit")
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
