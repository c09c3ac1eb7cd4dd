"""Read a file that someone else supplied: only a regular file, bounded in size and in time.

A bundle arrives from a workstation, an SD card or (with ``cmd/reload``) over the network, so its
files are not trusted until their hashes match. Reading them by path with ``open().read()`` lets
a FIFO hang the reader forever, ``/dev/zero`` fill the memory, a symlink reach outside the
bundle and a sparse 4 GiB file declared as 10 bytes be hashed for many seconds before it is
refused. Here a file is opened with ``O_NONBLOCK`` (a FIFO opens at once instead of waiting for a
writer) and, inside a bundle, ``O_NOFOLLOW``; then ``fstat`` on that very descriptor decides:
a regular file, no larger than the limit and the size declared, or a one-line
:class:`BundleError`. The bytes returned are the bytes hashed, so a file swapped after the check
is never the one served.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BundleError

# The largest model file a device loads (any one file of a bundle): far above a MobileNet
# (4-20 MB) or an ONNX export of one, far below what a Pi can hold twice.
MAX_MODEL_BYTES = 512 << 20
# Labels and manifests are text a person could read; anything bigger is not one.
MAX_TEXT_BYTES = 16 << 20
# Verifying a whole bundle on a slow SD card takes seconds; a minute means something is wrong.
VERIFY_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileData:
    """The bytes of one file as read (once) and their sha256; ``path`` is where they came from."""

    path: Path
    data: bytes = field(repr=False)
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: Path, *, follow_symlinks: bool) -> tuple[int, os.stat_result]:
    """Open ``path`` read-only without blocking and return the descriptor and its ``fstat``.

    Raises:
        BundleError: missing, a symlink (when not followed), or not a regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
        if path.parent.is_symlink():  # O_NOFOLLOW guards the last component only (probes/ inside a bundle)
            raise BundleError(f"{path.parent}: is a symlink; a bundle must hold its files itself")
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise BundleError(f"{path}: no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP or (not follow_symlinks and path.is_symlink()):
            raise BundleError(f"{path}: is a symlink; a bundle must hold its files itself") from None
        if exc.errno == errno.EISDIR:
            raise BundleError(f"{path}: is a directory, not a file") from None
        raise BundleError(f"{path}: cannot open ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise BundleError(f"{path}: is {_kind(info.st_mode)}, not a regular file")
    return fd, info


def read_regular(
    path: str | Path,
    *,
    limit: int = MAX_MODEL_BYTES,
    expected_size: int | None = None,
    follow_symlinks: bool = True,
    deadline: float | None = None,
    keep: bool = True,
) -> FileData:
    """Read a whole regular file once, hashing as it goes; refuse anything else before reading.

    Args:
        limit: refuse a larger file (checked with ``fstat`` before a byte is read).
        expected_size: the size the manifest declares; another size is refused before hashing.
        follow_symlinks: False inside a bundle (``O_NOFOLLOW``: a symlink is refused).
        deadline: ``time.monotonic()`` after which reading stops with an error.
        keep: False to hash without holding the bytes (``data`` is then empty).
    """
    path = Path(path)
    fd, info = open_regular(path, follow_symlinks=follow_symlinks)
    try:
        size = info.st_size
        if expected_size is not None and size != expected_size:
            raise BundleError(
                f"{path}: size does not match the manifest ({size} bytes; it lists {expected_size} bytes "
                "and their sha256): file changed or copied incompletely"
            )
        if size > limit:
            raise BundleError(f"{path}: is {size} bytes, more than the {limit >> 20} MiB a device loads")
        digest = hashlib.sha256()
        chunks = []
        total = 0
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise BundleError(f"{path}: verification took longer than it may (a failing disk or a stalled mount?)")
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > limit or (expected_size is not None and total > expected_size):
                raise BundleError(f"{path}: grew while being read")
            digest.update(chunk)
            if keep:
                chunks.append(chunk)
    finally:
        os.close(fd)
    return FileData(path, b"".join(chunks), digest.hexdigest())


def read_text(path: str | Path, *, what: str, follow_symlinks: bool = True) -> str:
    """A small UTF-8 text file (labels, manifest) read through :func:`read_regular`."""
    data = read_regular(path, limit=MAX_TEXT_BYTES, follow_symlinks=follow_symlinks).data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(f"{path}: {what} is not UTF-8 text") from None
