"""Writing the daemon's own files (captures, snapshots) so that no failure leaves a broken one.

A file is written under a temporary name in its own folder, flushed to the disk, then renamed
over the final name (``os.replace`` is atomic on one file system): a reader, a crash or SIGKILL
sees either the whole file or none of it. What a kill or a full disk can leave is a temporary
file, which :func:`remove_temp_files` deletes when the folder is next inventoried.

A full or read-only disk fails every write the same way; :class:`WriteFailures` logs the first
failure of each kind (errno) once and then only counts, so it shows in stats instead of
flooding the journal with one traceback per frame.
"""

from __future__ import annotations

import errno
import logging
import os
from contextlib import suppress
from pathlib import Path
from threading import Lock

TEMP_PREFIX = ".edgesight-"
TEMP_SUFFIX = ".tmp"
FILE_MODE = 0o644  # readable by the person who sorts captures, like a plain write under umask 022


def temp_name(final: Path) -> Path:
    """The temporary name a write of ``final`` uses (hidden, same folder, unique per process)."""
    return final.with_name(f"{TEMP_PREFIX}{final.name}.{os.getpid()}{TEMP_SUFFIX}")


def is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (temp name, fsync, rename, fsync the folder).

    Raises the OSError of the failing step; the temporary file is then already removed.
    """
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; a file system that cannot fsync a folder is not an error."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temp_files(folder: Path) -> int:
    """Delete what interrupted writes left in ``folder`` (only our own temporary names); count them."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if is_temp(entry.name) and entry.is_file(follow_symlinks=False):
            with suppress(OSError):
                os.unlink(entry.path)
                removed += 1
    return removed


class WriteFailures:
    """Failed writes counted by kind; the first of each kind is logged once, with what to do."""

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self.what = what
        self.log = logger
        self._counts: dict[str, int] = {}
        self._lock = Lock()

    def record(self, exc: OSError, path: Path | None = None) -> None:
        kind = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        with self._lock:
            first = kind not in self._counts
            self._counts[kind] = self._counts.get(kind, 0) + 1
        if first:
            self.log.warning(
                "%s: cannot write %s (%s); further %s failures are only counted (stats: write_failures)",
                self.what,
                path or "",
                exc.strerror or exc,
                kind,
            )

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
