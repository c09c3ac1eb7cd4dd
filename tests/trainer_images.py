"""Image files for the trainer tests: coloured shapes per class, distinct photos, and real bad files."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

SHAPE_CLASSES = ("circle", "square", "triangle")
COLOURS = {"circle": (40, 40, 220), "square": (40, 200, 40), "triangle": (220, 60, 40)}  # BGR


def shape_image(kind: str, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """A BGR photo-like image: noisy background, one filled shape of the class's colour."""
    image = rng.integers(90, 170, (size // 8, size // 8, 3)).astype(np.uint8)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
    r = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, 2))
    colour = tuple(int(np.clip(c + rng.integers(-25, 25), 0, 255)) for c in COLOURS[kind])
    if kind == "circle":
        cv2.circle(image, (cx, cy), r, colour, -1)
    elif kind == "square":
        cv2.rectangle(image, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
    else:
        points = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(image, [points], colour)
    return image


def write_shapes(root: Path, per_class: int = 20, seed: int = 0, size: int = 128) -> Path:
    """A folder per class of JPEG shape photos; returns ``root``."""
    rng = np.random.default_rng(seed)
    for kind in SHAPE_CLASSES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(
                str(root / kind / f"{kind}_{i:03d}.jpg"), shape_image(kind, rng, size), [cv2.IMWRITE_JPEG_QUALITY, 92]
            )
    return root


def photo(seed: int, size: int = 128) -> np.ndarray:
    """A smooth random BGR image; different seeds give perceptually different images."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def write_jpeg(path: Path, image: np.ndarray, quality: int = 92) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return path


def write_truncated_jpeg(path: Path, image: np.ndarray) -> Path:
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes()[: len(data) // 2])
    return path


def write_animated_gif(path: Path) -> Path:
    from PIL import Image

    frames = [Image.fromarray(cv2.cvtColor(photo(100 + i), cv2.COLOR_BGR2RGB)) for i in range(3)]
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def write_ico(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(cv2.cvtColor(photo(200, 64), cv2.COLOR_BGR2RGB)).save(path, format="ICO")
    return path


def encode_jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def write_bytes_path(path: bytes, data: bytes) -> None:
    """Write to a path given as raw bytes (a name that need not be valid UTF-8)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def write_jpeg_with_trailer(path: Path, image: np.ndarray) -> Path:
    """A valid JPEG followed by bytes after its end-of-image marker, as some phones append."""
    path.parent.mkdir(parents=True, exist_ok=True)
    trailer = b"SEFH" + bytes(range(256)) * 2 + b"\x00\x01trailing metadata"
    path.write_bytes(encode_jpeg(image) + trailer)
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` RGB pixels, with a short IDAT of zeros."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
    data += _png_chunk(b"IDAT", zlib.compress(b"\x00" * 200_000, 9)) + _png_chunk(b"IEND", b"")
    path.write_bytes(data)
    return path
