"""Model inputs built with the device's own preprocessing, so what is trained is what runs.

Every image is decoded with ``read_photo`` (OpenCV's decoder, as on the device, behind the
same checks as ``data import``), fitted with ``fit_to_size`` and turned RGB with ``to_rgb``
exactly as on the device, once. Decoding once instead of every epoch is most of what makes CPU
training quick.

Where the fitted pixels live depends on how many there are (``STREAM_THRESHOLD_MB``):

- small datasets stay in one uint8 array in memory (today's path, fastest);
- above the threshold they are written, as they are decoded by a thread pool, to a raw file
  under the run directory (``RowFile``), and ``tf.data`` reads the rows each batch needs with
  ``pread``. A ``np.memmap`` would do the same, but every page it touches counts in the
  process's RSS; plain reads leave them in the kernel's page cache, so peak memory stays flat
  however many photos there are. ``Dataset.cache(filename)`` was not used because k-fold and
  per-epoch shuffling need random access to rows.

The cached backbone features of phase 1 use the same two stores. Augmentation runs in
``tf.data``; it is not part of the exported model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..device.core.preprocess import Fit, fit_to_size, to_rgb
from .images import read_photo

log = logging.getLogger(__name__)

T = TypeVar("T")

# Fitted pixels plus phase-1 features above this many MB are streamed from disk. Measured with
# scripts/train_memory.py (docs/training.md): below ~2,000 photos at 160 px the in-memory path
# is as lean as streaming and a little faster; above it, memory grows with every photo.
STREAM_THRESHOLD_MB = 256.0
CHUNK = 256  # photos decoded per round: bounds the decoded-but-not-written images in flight

Progress = Callable[[Iterable[T], int, str], Iterable[T]]
"""``progress(items, total, what)`` wraps a long loop; commands pass a tqdm bar, library default is silent."""


def no_progress(items: Iterable[T], total: int, what: str) -> Iterable[T]:
    """The library's default: no output (a command passes a progress bar instead)."""
    return items


def fitted_image(path: Path, size: int, fit: Fit) -> np.ndarray:
    """One file -> HxWx3 RGB uint8, fitted like the device fits a camera frame.

    Fitted first, then converted, as ``prepare`` does: the same pixels, and the colour
    conversion runs on size x size pixels instead of the whole photo.
    """
    return to_rgb(fit_to_size(read_photo(path), size, size, fit))


def _decoded(paths: Sequence[Path], size: int, fit: Fit, workers: int | None) -> Iterator[np.ndarray]:
    """Fitted images in order, decoded by a thread pool (OpenCV releases the GIL) a chunk at a time."""
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        for start in range(0, len(paths), CHUNK):
            yield from pool.map(lambda p: fitted_image(p, size, fit), paths[start : start + CHUNK])


def load_images(
    paths: list[Path], size: int, fit: Fit, workers: int | None = None, progress: Progress | None = None
) -> np.ndarray:
    """Decode and fit many files in parallel -> [N, size, size, 3] uint8 in memory."""
    progress = progress or no_progress
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(progress(_decoded(paths, size, fit, workers), len(paths), "loading photos")):
        out[i] = image
    return out


class RowFile:
    """Fixed-size rows (one fitted image, or one feature vector) in a raw file, read with pread.

    Written once, front to back; a ``.json`` beside it records shape, dtype and a fingerprint of
    what it holds, so a resumed run reuses a complete file and rewrites anything else.
    """

    def __init__(self, path: Path, count: int, row_shape: tuple[int, ...], dtype: Any) -> None:
        self.path = Path(path)
        self.count = count
        self.row_shape = tuple(row_shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        self._fd: int | None = None

    def __len__(self) -> int:
        return self.count

    def _meta(self, fingerprint: str) -> dict[str, Any]:
        return {"count": self.count, "row_shape": list(self.row_shape), "dtype": self.dtype.str, "of": fingerprint}

    def complete(self, fingerprint: str) -> bool:
        meta = self.path.with_suffix(".json")
        try:
            return json.loads(meta.read_text()) == self._meta(fingerprint) and self.path.stat().st_size == (
                self.count * self.row_bytes
            )
        except (OSError, ValueError):
            return False

    def write(self, rows: Iterable[np.ndarray], fingerprint: str) -> None:
        """Write every row in order, then the metadata that marks the file complete."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.with_suffix(".json").unlink(missing_ok=True)
        written = 0
        with self.path.open("wb") as handle:
            for row in rows:
                handle.write(np.ascontiguousarray(row, dtype=self.dtype).tobytes())
                written += len(row) if row.shape != self.row_shape else 1
        if self.path.stat().st_size != self.count * self.row_bytes:
            raise RuntimeError(f"{self.path}: wrote {written} rows, expected {self.count}")
        self.path.with_suffix(".json").write_text(json.dumps(self._meta(fingerprint)))

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The given rows, in the given order; neighbouring rows are read in one call."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.row_shape), dtype=self.dtype)
        flat = out.reshape(len(rows), -1).view(np.uint8)
        i = 0
        while i < len(rows):
            j = i + 1
            while j < len(rows) and rows[j] == rows[j - 1] + 1:
                j += 1
            data = os.pread(self._fd, (j - i) * self.row_bytes, int(rows[i]) * self.row_bytes)
            flat[i:j] = np.frombuffer(data, dtype=np.uint8).reshape(j - i, -1)
            i = j
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Rows:
    """Some rows of an in-memory array or a ``RowFile``: what phase 1 and phase 2 train on.

    ``take`` selects without copying (k-fold folds, training views), so a fold of a streamed
    dataset costs an index array, not a copy of its pixels.
    """

    def __init__(self, store: np.ndarray | RowFile, rows: np.ndarray | None = None) -> None:
        self.store = store
        self.rows = np.arange(len(store), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def streamed(self) -> bool:
        return isinstance(self.store, RowFile)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.store.row_shape if isinstance(self.store, RowFile) else tuple(self.store.shape[1:])

    def take(self, index: np.ndarray) -> Rows:
        return Rows(self.store, self.rows[np.asarray(index, dtype=np.int64)])

    def read(self, index: np.ndarray | slice) -> np.ndarray:
        """Rows ``index`` (positions in this selection) as an array."""
        rows = self.rows[index]
        return self.store.read(rows) if isinstance(self.store, RowFile) else self.store[rows]

    def array(self) -> np.ndarray:
        """Everything selected, in memory (the in-memory path; never called on a streamed store)."""
        return self.read(slice(None))

    def batches(self, size: int = 64) -> Iterator[np.ndarray]:
        for start in range(0, len(self), size):
            yield self.read(slice(start, start + size))


def fingerprint(paths: Sequence[Path], *parts: object) -> str:
    """What a cache file was made from: the photos (path, size, mtime) and the settings."""
    digest = hashlib.sha256(repr(parts).encode())
    for p in paths:
        try:
            st = os.stat(p)
            digest.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            digest.update(f"{p}\0missing\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def should_stream(photos: int, size: int, feature_rows: int, feature_dim: int, mode: str) -> bool:
    """``mode`` on/off forces it; auto streams when pixels and features would pass the threshold."""
    if mode in ("on", "off"):
        return mode == "on"
    megabytes = (photos * size * size * 3 + feature_rows * feature_dim * 4) / 1e6
    return megabytes > STREAM_THRESHOLD_MB


def load_pixels(
    paths: list[Path],
    size: int,
    fit: Fit,
    cache: Path | None,
    *,
    progress: Progress | None = None,
    what: str = "loading photos",
) -> Rows:
    """Fitted pixels of ``paths``: in memory when ``cache`` is None, else streamed to/from that file."""
    progress = progress or no_progress
    if cache is None:
        out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
        for i, image in enumerate(progress(_decoded(paths, size, fit, None), len(paths), what)):
            out[i] = image
        return Rows(out)
    store = RowFile(cache, len(paths), (size, size, 3), np.uint8)
    mark = fingerprint(paths, size, str(fit))
    if store.complete(mark):
        log.info("reusing fitted pixels in %s", cache)
    else:
        store.write(progress(_decoded(paths, size, fit, None), len(paths), what), mark)
    return Rows(store)


def augmenter(cfg: Any) -> Any | None:
    """Keras augmentation layers from the config, or None when augmentation is off."""
    import keras

    strength = cfg.augment
    if strength <= 0:
        return None
    layers = []
    if cfg.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=cfg.seed))
    if cfg.rotation:
        layers.append(keras.layers.RandomRotation(cfg.rotation * strength, fill_mode="reflect", seed=cfg.seed))
    if cfg.zoom:
        layers.append(keras.layers.RandomZoom((-cfg.zoom * strength, 0.0), fill_mode="reflect", seed=cfg.seed))
    if cfg.contrast:
        layers.append(
            keras.layers.RandomContrast(min(1.0, cfg.contrast * strength), value_range=(0, 255), seed=cfg.seed)
        )
    if cfg.brightness:
        layers.append(
            keras.layers.RandomBrightness(min(1.0, cfg.brightness * strength), value_range=(0, 255), seed=cfg.seed)
        )
    return keras.Sequential(layers, name="augment") if layers else None


def make_dataset(
    x: np.ndarray | Rows,
    y: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool = False,
    augment: Any = None,
    seed: int = 0,
    replicas: int = 1,
) -> Any:
    """A batched ``tf.data.Dataset`` of (float32 inputs, target), augmented when asked.

    In-memory rows become tensors as before. Streamed rows are read per batch: the shuffled
    positions are batched first and a parallel ``numpy_function`` reads those rows from disk,
    so memory holds a few batches, not the dataset. With ``replicas`` > 1 (MirroredStrategy)
    the last partial batch is dropped, since Keras cannot split a ragged batch over replicas;
    ``batch_size`` shrinks to a multiple of ``replicas`` that the data fills at least once.
    """
    import tensorflow as tf

    rows = x if isinstance(x, Rows) else Rows(x)
    y = np.asarray(y)
    drop = replicas > 1
    if drop:
        batch_size = max(replicas, min(batch_size, len(rows) // replicas * replicas))
    if not rows.streamed:
        data = tf.data.Dataset.from_tensor_slices((rows.array(), y))
        if shuffle:
            data = data.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
        data = data.batch(batch_size, drop_remainder=drop)
    else:
        data = tf.data.Dataset.range(len(rows))
        if shuffle:
            data = data.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)

        def read(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            index = np.sort(index)
            return rows.read(index), y[index]

        x_dtype = tf.as_dtype(rows.store.dtype if isinstance(rows.store, RowFile) else rows.store.dtype)
        y_dtype = tf.as_dtype(y.dtype)

        def fetch(index: Any) -> tuple[Any, Any]:
            a, b = tf.numpy_function(read, [index], (x_dtype, y_dtype))
            a.set_shape((None, *rows.row_shape))
            b.set_shape((None, *y.shape[1:]))
            return a, b

        data = data.batch(batch_size, drop_remainder=drop).map(fetch, num_parallel_calls=tf.data.AUTOTUNE)
    data = data.map(lambda a, b: (tf.cast(a, tf.float32), b), num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        data = data.map(
            lambda a, b: (tf.clip_by_value(augment(a, training=True), 0.0, 255.0), b),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return data.prefetch(tf.data.AUTOTUNE)
