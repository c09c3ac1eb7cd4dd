"""The real-time pipeline: capture -> (preprocess + infer) x N workers -> publish, as overlapping threads.

    source --capture thread--> [input queue] --worker 1..N--> [result queue] --publisher--> on_result
                                (bounded)       own Classifier    (re-ordered by sequence)

Why threads and not processes: OpenCV decoding/resizing and the LiteRT ``invoke`` release the
GIL, so N threads each owning one single-threaded interpreter keep N cores busy on a Pi without
copying frames between processes. One interpreter per worker because interpreters are not
thread-safe, and because N single-threaded invokes in parallel beat one N-threaded invoke
(XNNPACK scales sub-linearly on small models, and decode/preprocess overlap with it).

A live source feeds a one-slot queue that always holds the newest frame (stale frames are
dropped and counted); a file source in benchmark mode blocks, so every frame is classified.
Results reach ``on_result`` in capture order, from one thread, so consumers need no locks.

Two things happen in the capture stage, before a frame is queued: the region of interest is
cropped (``roi``, a view), and the change gate (``gate``, :mod:`.gate`) decides whether the frame
is classified at all. A gated frame never reaches a worker or ``on_result``; it is counted.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .classify import Classification, Classifier
from .core.errors import ConfigError
from .gate import ChangeGate
from .machine import memory_total_mb, usable_cores
from .results import FrameResult
from .roi import Box, crop, resolve_roi
from .sources import Frame, Source

log = logging.getLogger(__name__)

STAGES = ("capture", "queue", "preprocess", "infer", "postprocess", "publish", "total")
WINDOW = 300  # results kept for latency percentiles
FPS_WINDOW_S = 5.0


@dataclass(frozen=True)
class Plan:
    """How many interpreters and how many threads each: the pipeline's choice for this machine."""

    workers: int
    threads_per_worker: int


# Below this much memory (a Pi Zero 2 W has 512 MB, a Pi 3 A+ 512 MB, a Pi 3 B 1 GB) the automatic
# plan stops at two interpreters: each one more costs ~7 MB (XNNPACK packs the weights per
# interpreter, measured for MobileNet V2), and two multi-threaded ones keep all four cores busy.
SMALL_BOARD_MB = 1024
SMALL_BOARD_WORKERS = 2


def plan_workers(cores: int | None = None, workers: int | None = None, memory_mb: int | None = None) -> Plan:
    """One single-threaded interpreter per core (a Pi 4/5: 4; this workstation: 2), the cores split
    between the interpreters otherwise.

    With several interpreters in flight their threads together should not exceed the cores, or they
    fight over them. A user who asks for one worker gets one interpreter using every core; a board
    with less than :data:`SMALL_BOARD_MB` of memory (``memory_mb``, default: this machine's) gets at
    most :data:`SMALL_BOARD_WORKERS` interpreters unless ``workers`` says otherwise.
    """
    cores = max(1, cores or usable_cores())
    if workers:
        n = max(1, workers)
    else:
        memory = memory_mb if memory_mb is not None else memory_total_mb()
        small = memory is not None and memory < SMALL_BOARD_MB
        n = min(cores, SMALL_BOARD_WORKERS) if small else cores
    return Plan(n, max(1, cores // n))


_END = object()


class Pipeline:
    """Run ``source`` through ``workers`` classifiers until the source ends, ``max_frames`` or ``stop()``."""

    def __init__(
        self,
        source: Source,
        make_classifier: Callable[[], Classifier],
        *,
        workers: int | None = None,
        on_result: Callable[[FrameResult], None] | None = None,
        max_frames: int | None = None,
        queue_size: int | None = None,
        gate: ChangeGate | None = None,
        roi: tuple[float, ...] | None = None,
    ) -> None:
        self.source = source
        self.gate = gate
        self.roi = roi  # as configured; resolved to pixels on the first frame (the size is known then)
        self._box: Box | None = None
        self._seen_at = 0.0  # monotonic time of the last frame read, classified or gated
        self.workers = max(1, workers or plan_workers().workers)
        self.on_result = on_result or (lambda result: None)
        self.max_frames = max_frames
        # Classifiers are built here, before any thread starts, so a bad model fails the start-up.
        self._classifiers = [make_classifier() for _ in range(self.workers)]
        self._generation = 0
        self._swap_lock = threading.Lock()
        self.live = bool(source.live)
        self._inputs: queue.Queue = queue.Queue(maxsize=1 if self.live else (queue_size or 2 * self.workers))
        # bounded too: a slow consumer must make the camera drop frames, not the daemon hoard them
        self._results: queue.Queue = queue.Queue(maxsize=2 * self.workers + 2)
        self._take_lock = threading.Lock()
        self._next_seq = 0
        self._stop = threading.Event()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._dropped = 0
        self._errors = 0
        self._delivered = 0
        self._started = 0.0
        self._lat: dict[str, deque] = {stage: deque(maxlen=WINDOW) for stage in (*STAGES, "consumers")}
        self._times: deque = deque(maxlen=4096)
        self._latest: FrameResult | None = None
        self.source_ended = False
        self.failure: str | None = None  # set when a stage died: the daemon then exits 1 (systemd restarts it)
        self.failure_code = 1  # 2 when the failure is the config's ([source] roi outside the frame)

    # -- public ------------------------------------------------------------------------------
    @property
    def classifier(self) -> Classifier:
        """The current model (worker 0's instance): labels, spec, runtime for status reports."""
        return self._classifiers[0]

    @property
    def latest(self) -> FrameResult | None:
        """The most recent result delivered (for snapshots and previews)."""
        return self._latest

    @property
    def frames(self) -> int:
        return self._delivered

    def run(self) -> None:
        """Start the stages and block until the source ends, ``max_frames`` or :meth:`stop`."""
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._capture, name="capture", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, args=(i,), name=f"worker-{i}", daemon=True) for i in range(self.workers)
        ]
        publisher = threading.Thread(target=self._publish, name="publisher", daemon=True)
        self._threads.append(publisher)
        for thread in self._threads:
            thread.start()
        try:
            while not self._done.wait(0.2):
                pass
        finally:
            self.stop()
            deadline = time.monotonic() + 1.0  # one budget for all: SIGTERM must end within 2 s
            for thread in self._threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Ask every stage to finish; safe from any thread and from signal handlers."""
        self._stop.set()
        self._done.set()
        self.source.interrupt()

    def capturing(self) -> bool:
        """True while the capture thread still runs (e.g. blocked in a camera read)."""
        return any(t.name == "capture" and t.is_alive() for t in self._threads)

    def healthy(self, max_silence_s: float) -> bool:
        """Alive and making progress: a frame within ``max_silence_s``, or the source known to be down.

        A camera driver that wedges inside ``read()`` leaves every thread alive but no frame comes:
        the watchdog must then stop being fed so systemd restarts the service. A source in a
        reopen backoff is not wedged; it is handled, and reported in ``stats``.
        """
        if not self.alive():
            return False
        last = max(self._times[-1] if self._times else self._started, self._seen_at)  # gated frames count
        if time.monotonic() - last <= max_silence_s:
            return True
        return self.source.failing_since is not None

    def alive(self) -> bool:
        """True while every stage thread runs (the watchdog pings only then)."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def swap_classifiers(self, make_classifier: Callable[[], Classifier]) -> Classifier:
        """Build a new classifier per worker, then switch; on any error the old ones keep running."""
        fresh = [make_classifier() for _ in range(self.workers)]
        with self._swap_lock:
            self._classifiers = fresh
            self._generation += 1
        if self.gate is not None:
            self.gate.force()  # the new model classifies the next frame, changed or not
        log.info("model swapped in: %s %s", fresh[0].name, fresh[0].version)
        return fresh[0]

    def stats(self) -> dict:
        """Throughput, drops, queue depths and per-stage latency percentiles (ms) over recent frames."""
        now = time.monotonic()
        recent = [t for t in list(self._times) if now - t <= FPS_WINDOW_S]
        span = min(FPS_WINDOW_S, now - self._started) if self._started else 0.0
        fps = len(recent) / span if span > 0.1 else 0.0
        elapsed = now - self._started if self._started else 0.0
        latency = {}
        for stage, values in self._lat.items():
            data = np.fromiter(list(values), dtype=np.float64)
            if data.size:
                p50, p90, p99 = np.percentile(data, (50, 90, 99))
                latency[stage] = {"p50": round(float(p50), 2), "p90": round(float(p90), 2), "p99": round(float(p99), 2)}
        source = {
            "name": self.source.name,
            "live": self.live,
            "reopens": self.source.reopens,
            "gap_s": round(self.source.gap_s, 2),
            "down": self.source.failing_since is not None,
        }
        return {
            "fps": round(fps, 2),
            "fps_avg": round(self._delivered / elapsed, 2) if elapsed > 0 else 0.0,
            "frames": self._delivered,
            "dropped": self._dropped + int(self.source.dropped),
            "errors": self._errors,
            "queue": {"input": self._inputs.qsize(), "results": self._results.qsize()},
            "workers": self.workers,
            "latency_ms": latency,
            "source": source,
            "gate": self.gate.stats() if self.gate is not None else {"enabled": False},
        }

    # -- stages ------------------------------------------------------------------------------
    def _capture(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                if frame is None:
                    self.source_ended = not self._stop.is_set()
                    break
                # latencies are measured on the monotonic clock; frame.timestamp is wall time for payloads
                read_at = self._seen_at = time.monotonic()
                frame = self._region(frame)
                if self.gate is not None and not self.gate.decide(frame.image, read_at, frame.number).classify:
                    continue  # unchanged: the last result stands; no preprocess, no inference
                self._enqueue((frame, read_at))
        except ConfigError as exc:  # the ROI does not fit the frame: the config's fault, one line
            log.error("%s", exc)
            self.failure, self.failure_code = str(exc), 2
        except Exception as exc:  # noqa: BLE001 - report, then end the run rather than hang it
            log.exception("capture stage failed")
            self._errors += 1
            self.failure = f"capture stage failed: {exc}"
        finally:
            for _ in range(self.workers):
                self._put_blocking(_END)

    def _region(self, frame: Frame) -> Frame:
        """The frame cropped to ``roi`` (resolved against the first frame's size), or as it is."""
        if self.roi is None:
            return frame
        if self._box is None:
            height, width = frame.image.shape[:2]
            self._box = resolve_roi(self.roi, width, height)
            log.info("region of interest: x=%d y=%d %dx%d of %dx%d", *self._box, width, height)
        return dataclasses.replace(frame, image=crop(frame.image, self._box))

    def _enqueue(self, item: tuple[Frame, float]) -> None:
        if self.live:
            while True:
                try:
                    self._inputs.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self._inputs.get_nowait()  # the stale frame goes; a camera serves the newest
                        self._dropped += 1
                    except queue.Empty:
                        pass
        else:
            self._put_blocking(item)

    def _put_blocking(self, item: object) -> None:
        while True:
            try:
                self._inputs.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set() and item is not _END:
                    return
                if self._stop.is_set():  # make room for the end marker
                    try:
                        self._inputs.get_nowait()
                    except queue.Empty:
                        pass

    def _take(self) -> tuple[object, int]:
        # get + numbering under one lock: sequence numbers follow queue order exactly
        while True:
            if self._stop.is_set():
                return _END, -1
            with self._take_lock:
                try:
                    item = self._inputs.get(timeout=0.1)
                except queue.Empty:
                    item = None
                if item is not None:
                    seq = self._next_seq
                    if item is not _END:
                        self._next_seq += 1
                    return item, seq

    def _work(self, index: int) -> None:
        generation, classifier = self._generation, self._classifiers[index]
        while True:
            item, seq = self._take()
            if item is _END:
                self._put_result(seq, _END, final=True)
                return
            frame: Frame
            read_at: float
            frame, read_at = item  # type: ignore[misc]  # (frame, monotonic time it was read)
            if generation != self._generation:
                with self._swap_lock:
                    generation, classifier = self._generation, self._classifiers[index]
            picked = time.monotonic()
            try:
                classified = classifier.classify(frame.image, frame.order)  # times preprocess/infer/postprocess
            except Exception:  # noqa: BLE001 - one bad frame must not stop the camera
                self._errors += 1
                log.exception("frame %d failed", frame.number)
                self._put_result(seq, None)
                continue
            latency = {
                "capture": frame.capture_ms,
                "queue": max(0.0, (picked - read_at) * 1e3),
                **classified.latency_ms,
            }
            result = FrameResult(
                frame,
                Classification(classified.top, latency),
                latency,
                {"name": classifier.name, "version": classifier.version},
                seq,
                time.perf_counter(),
                read_at,
            )
            self._put_result(seq, result)

    def _put_result(self, seq: int, item: object, final: bool = False) -> None:
        """Block while the publisher is behind; after stop() give up (the end marker always goes)."""
        while True:
            try:
                self._results.put((seq, item), timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set() and not final:
                    return
                if self._stop.is_set() and not self._publisher_alive():
                    return

    def _publisher_alive(self) -> bool:
        return any(t.name == "publisher" and t.is_alive() for t in self._threads)

    def _publish(self) -> None:
        pending: list[tuple[int, int, object]] = []
        expected, ended, tiebreak = 0, 0, 0
        while ended < self.workers:
            try:
                seq, result = self._results.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set() and not any(t.is_alive() for t in self._threads if t.name.startswith("worker")):
                    break
                continue
            if result is _END:
                ended += 1
                continue
            tiebreak += 1
            heapq.heappush(pending, (seq, tiebreak, result))
            while pending and pending[0][0] <= expected:
                _, _, ready = heapq.heappop(pending)
                expected += 1
                if ready is not None and not self._deliver(ready):  # type: ignore[arg-type]
                    return
        # flush what arrived out of order before the end
        while pending:
            _, _, ready = heapq.heappop(pending)
            if ready is not None and not self._deliver(ready):  # type: ignore[arg-type]
                return
        self._done.set()

    def _deliver(self, result: FrameResult) -> bool:
        """Hand one result to the consumer; False once ``max_frames`` is reached."""
        if self.max_frames is not None and self._delivered >= self.max_frames:
            self._done.set()
            return False
        now = time.perf_counter()
        latency = result.latency_ms
        latency["publish"] = (now - result.done_at) * 1e3
        latency["total"] = latency["capture"] + (time.monotonic() - result.read_at) * 1e3
        for stage in STAGES:
            self._lat[stage].append(latency[stage])
        try:
            self.on_result(result)
        except Exception:  # noqa: BLE001 - a failing consumer must not stop classification
            self._errors += 1
            log.exception("result consumer failed on frame %d", result.frame.number)
        self._lat["consumers"].append((time.perf_counter() - now) * 1e3)
        self._latest = result
        self._delivered += 1
        self._times.append(time.monotonic())
        if self.max_frames is not None and self._delivered >= self.max_frames:
            self.stop()
            return False
        return True
