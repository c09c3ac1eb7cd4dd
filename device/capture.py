"""Capture for retraining: keep the frames the model was unsure about, or where its state changed.

Those are the frames worth labelling: a low top score means the model has not seen enough of
this, and a state change is where mistakes (a flapping label) show first. Each capture is a
JPEG plus a JSON sidecar with the full result, in ``<dir>/<YYYYmmdd>/<ts>_<label>_<score>.jpg``.
A person later sorts the JPEGs into ``SORTED/<class>/``, which ``edgesight data import`` reads as
a plain folder-per-class dataset (sidecars are not images and are skipped).

The pipeline must never wait on the SD card: the consumer only decides and enqueues (a bounded
queue, dropping when full); a writer thread encodes and writes. Captures are rate-limited and
kept under a disk quota by deleting the OLDEST of the daemon's own captures -- files whose name
matches the capture pattern and whose sidecar carries the capture marker. Nothing else in the
folder (a person's sorted images, notes) is ever touched or counted.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2

from .core.errors import ConfigError
from .core.preprocess import to_bgr
from .files import WriteFailures, remove_temp_files, write_atomic
from .results import FrameResult, result_payload
from .smoothing import NO_LABEL

log = logging.getLogger(__name__)

MARKER = "edgesight_capture"
# 20261125T155012.123Z_<label>_0.412.jpg -- the timestamp first, so names sort by age.
NAME_RE = re.compile(r"^(\d{8}T\d{6}\.\d{3}Z)_(.+)_(\d\.\d{3})\.jpg$")
DAY_RE = re.compile(r"^\d{8}$")


def safe_label(label: str) -> str:
    """A label as a file-name fragment: letters, digits, '-' only (spaces and '_' become '-')."""
    text = re.sub(r"[^A-Za-z0-9-]+", "-", label.strip()).strip("-")
    return text[:40] or "unlabelled"


def capture_name(timestamp: float, label: str, score: float) -> tuple[str, str]:
    """(day folder, file name) for a capture taken at ``timestamp`` (UTC)."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    stamp = moment.strftime("%Y%m%dT%H%M%S") + f".{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y%m%d"), f"{stamp}_{safe_label(label)}_{min(max(score, 0.0), 1.0):.3f}.jpg"


@dataclass(frozen=True)
class CaptureSettings:
    """What to keep and how much: the ``[capture]`` config section."""

    dir: Path
    low_score: float = 0.5  # capture when the top-1 score is below this
    on_state_change: bool = True
    min_interval_s: float = 2.0  # at most one capture per interval
    max_mb: float = 500.0  # quota for the daemon's own captures
    min_free_mb: float = 200.0  # never fill the disk: skip captures below this much free space
    jpeg_quality: int = 90
    queue_size: int = 4

    @classmethod
    def from_section(cls, section: Any) -> CaptureSettings:
        """From the typed ``[capture]`` config section: every field the section has, by name."""
        values = {f.name: getattr(section, f.name) for f in fields(cls) if hasattr(section, f.name)}
        return cls(**{**values, "dir": Path(values["dir"])})


@dataclass(frozen=True)
class OwnCapture:
    image: Path
    sidecar: Path
    bytes: int


def _marked(text: str) -> bool:
    """The sidecar text carries the capture marker (also when the rest of it was cut off)."""
    return f'"{MARKER}": 1' in text[:200]


def remove_leftovers(root: Path) -> int:
    """Delete what interrupted or failed writes left under ``root``; return how many files went.

    Only the daemon's own debris goes: temporary files of :func:`~edgesight.device.files.write_atomic`,
    marked sidecars whose image never arrived, captures whose marked sidecar was cut off, and
    zero-byte capture-named JPEGs without a sidecar (a full disk under older versions).
    A non-empty file that merely looks like a capture is kept.
    """
    removed = remove_temp_files(root)
    if not root.is_dir():
        return removed
    for day in (p for p in root.iterdir() if p.is_dir() and DAY_RE.match(p.name)):
        removed += remove_temp_files(day) + _remove_broken_sidecars(day) + _remove_empty_images(day)
    return removed


def _remove_broken_sidecars(day: Path) -> int:
    """Marked sidecars without their image, and cut-off marked sidecars with theirs."""
    removed = 0
    for sidecar in day.glob("*.json"):
        image = sidecar.with_suffix(".jpg")
        if not NAME_RE.match(image.name):
            continue
        try:
            text = sidecar.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if not _marked(text):
            continue
        try:
            json.loads(text)
            doomed = [] if image.exists() else [sidecar]
        except ValueError:
            doomed = [sidecar, image]
        for path in doomed:
            with suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def _remove_empty_images(day: Path) -> int:
    """Zero-byte capture-named JPEGs without a sidecar: a full disk under older versions."""
    removed = 0
    for image in day.glob("*.jpg"):
        if NAME_RE.match(image.name) and not image.with_suffix(".json").exists():
            with suppress(OSError):
                if image.is_file() and image.stat().st_size == 0:
                    image.unlink()
                    removed += 1
    return removed


def own_captures(root: Path) -> list[OwnCapture]:
    """The daemon's own captures under ``root``, oldest first; anything else is ignored."""
    found: list[OwnCapture] = []
    if not root.is_dir():
        return found
    for day in sorted(p for p in root.iterdir() if p.is_dir() and DAY_RE.match(p.name)):
        for image in sorted(day.iterdir()):
            if not NAME_RE.match(image.name) or not image.is_file():
                continue
            sidecar = image.with_suffix(".json")
            try:
                if json.loads(sidecar.read_text(encoding="utf-8")).get(MARKER) != 1:
                    continue
                size = image.stat().st_size + sidecar.stat().st_size
            except (OSError, ValueError, AttributeError):
                continue  # no sidecar or not ours: not the daemon's to rotate
            found.append(OwnCapture(image, sidecar, size))
    return found


class CaptureWriter:
    """A frame-result consumer that saves low-score and state-change frames for relabelling."""

    def __init__(
        self,
        settings: CaptureSettings,
        clock: Callable[[], float] = time.monotonic,
        current_state: Callable[[], str | None] | None = None,
    ) -> None:
        """``current_state`` gives the daemon's smoothed state label (None before there is one);
        without it the thresholded top-1 label stands in for the state."""
        self.settings = settings
        self.clock = clock
        self.current_state = current_state
        self.root = Path(settings.dir)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"[capture] dir: cannot create {self.root} ({exc.strerror or exc})") from None
        self.saved = 0
        self.dropped = 0  # skipped because the writer was busy
        self.rotated = 0
        self.skipped_disk = 0
        self.leftovers_removed = 0
        self.failures = WriteFailures("capture", log)
        self._last_capture: dict[str, float] = {}  # per reason: a burst of low scores cannot hide a state change
        self._state: str | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=settings.queue_size)
        self._inventory: list[OwnCapture] = []  # filled by the writer thread: a big folder must not delay start
        self._used = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._write_loop, name="capture-writer", daemon=True)
        self._thread.start()

    # -- the consumer (pipeline thread): decide and enqueue, never touch the disk -------------
    def __call__(self, result: FrameResult) -> str | None:
        """Consider one frame result; return the reason when it was queued for saving."""
        best = result.classification.top[0]
        state = self._state_for(best.label, best.score)
        reason = None
        if best.score < self.settings.low_score:
            reason = "low_score"
        if self.settings.on_state_change and state is not None and self._state is not None and state != self._state:
            reason = "state_change"
        if state is not None:
            self._state = state
        if reason is None or not self._rate_allows(reason):
            return None
        try:
            self._queue.put_nowait((result, reason, state))
        except queue.Full:
            self.dropped += 1
            return None
        self._last_capture[reason] = self.clock()
        return reason

    def _state_for(self, label: str, score: float) -> str | None:
        if self.current_state is not None:
            return self.current_state()
        return label if score >= self.settings.low_score else NO_LABEL

    def _rate_allows(self, reason: str) -> bool:
        """At most one capture per ``min_interval_s`` per reason, on the monotonic clock."""
        last = self._last_capture.get(reason)
        return last is None or self.clock() - last >= self.settings.min_interval_s

    # -- the writer thread ---------------------------------------------------------------------
    def _write_loop(self) -> None:
        self._take_inventory()
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._save(*item)
            except OSError as exc:  # a full or read-only disk: count it, never a traceback per frame
                self.failures.record(exc, self.root)
            except Exception:  # noqa: BLE001 - nothing a capture does may kill the daemon
                log.exception("capture failed")
            finally:
                self._queue.task_done()

    def _take_inventory(self) -> None:
        """Clear interrupted writes, then count the captures already there (in this thread: a big
        folder must not delay the start)."""
        leftovers = remove_leftovers(self.root)
        if leftovers:
            log.info("capture: removed %d file(s) left by interrupted or failed writes in %s", leftovers, self.root)
        existing = own_captures(self.root)
        with self._lock:
            self._inventory = existing + self._inventory
            self._used += sum(c.bytes for c in existing)
            self.leftovers_removed = leftovers
        settings = self.settings
        log.info(
            "capturing to %s (score < %.2f%s, every >= %.1f s, quota %.0f MB, %d existing)",
            self.root,
            settings.low_score,
            ", state changes" if settings.on_state_change else "",
            settings.min_interval_s,
            settings.max_mb,
            len(existing),
        )

    def _save(self, result: FrameResult, reason: str, state: str | None) -> Path | None:
        settings = self.settings
        if shutil.disk_usage(self.root).free < settings.min_free_mb * 1e6:
            self.skipped_disk += 1
            log.warning("capture skipped: less than %.0f MB free on %s", settings.min_free_mb, self.root)
            return None
        frame = result.frame
        ok, jpeg = cv2.imencode(
            ".jpg", to_bgr(frame.image, frame.order), [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]
        )
        if not ok:
            log.warning("capture: frame %s could not be encoded", frame.number)
            return None
        path = self._free_name(result)
        sidecar = path.with_suffix(".json")
        sidecar_data = {MARKER: 1, "reason": reason, "state": state, "image": path.name, **result_payload(result)}
        # sidecar first: an image on disk always has its marked sidecar, so a crash between the
        # two leaves a marked orphan sidecar that the next inventory removes
        write_atomic(sidecar, (json.dumps(sidecar_data, indent=1) + "\n").encode("utf-8"))
        try:
            write_atomic(path, jpeg.tobytes())
        except OSError:
            sidecar.unlink(missing_ok=True)
            raise
        size = path.stat().st_size + sidecar.stat().st_size
        with self._lock:
            self._inventory.append(OwnCapture(path, sidecar, size))
            self._used += size
            self.saved += 1
            self._enforce_quota()
        log.debug("captured %s (%s)", path, reason)
        return path

    def _free_name(self, result: FrameResult) -> Path:
        """``<dir>/<day>/<ts>_<label>_<score>.jpg``, moved on a millisecond until no file has it."""
        best = result.classification.top[0]
        timestamp = result.frame.timestamp or time.time()  # wall time: the name says when it was taken
        while True:
            day, name = capture_name(timestamp, best.label, best.score)
            folder = self.root / day
            folder.mkdir(exist_ok=True)
            path = folder / name
            if not path.exists() and not path.with_suffix(".json").exists():  # never overwrite
                return path
            timestamp += 0.001

    def _enforce_quota(self) -> None:
        limit = self.settings.max_mb * 1e6
        while self._used > limit and len(self._inventory) > 1:
            oldest = self._inventory.pop(0)
            for part in (oldest.image, oldest.sidecar):
                part.unlink(missing_ok=True)
            self._used -= oldest.bytes
            self.rotated += 1
            try:
                oldest.image.parent.rmdir()  # only succeeds when the day folder is now empty
            except OSError:
                pass

    # -- life ------------------------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> None:
        """Wait until queued captures are on disk (tests, clean stop)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=5)
        log.info(
            "captures: %(saved)d saved, %(rotated)d rotated out, %(dropped)d dropped (writer busy), "
            "%(files)d kept = %(mb).2f MB of %(quota_mb).0f MB",
            self.stats(),
        )

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "dir": str(self.root),
                "saved": self.saved,
                "dropped": self.dropped,
                "rotated": self.rotated,
                "skipped_low_disk": self.skipped_disk,
                "write_failures": self.failures.total,
                "leftovers_removed": self.leftovers_removed,
                "files": len(self._inventory),
                "mb": round(self._used / 1e6, 3),
                "quota_mb": self.settings.max_mb,
            }
