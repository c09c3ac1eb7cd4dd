"""The threaded pipeline on real LiteRT and real videos, plus the state smoother."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from conftest import testdata_path
from videos import cat_video

from edgesight.device.classify import Classifier, Prediction
from edgesight.device.core.errors import BundleError
from edgesight.device.pipeline import STAGES, Pipeline, Plan, plan_workers
from edgesight.device.smoothing import StateSmoother
from edgesight.device.sources import Frame, Source, open_source


class FakeSource:
    """A hand-made :class:`Source` over a real one: the full protocol, with nothing down or reopened.

    Subclasses override :meth:`read` to misbehave (crash, wedge, stamp frames oddly).
    """

    live = False

    def __init__(self, inner: Source, name: str) -> None:
        self.inner = inner
        self.name = name
        self.dropped = 0
        self.reopens = 0
        self.gap_s = 0.0
        self.failing_since: float | None = None

    def read(self) -> Frame | None:
        return self.inner.read()

    def interrupt(self) -> None:
        self.inner.interrupt()

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return cat_video(
        tmp_path_factory.mktemp("v") / "cat.avi",
        testdata_path("images", "cat_720p.jpg"),
        count=24,
        size=(640, 360),
        fps=30,
    )


@pytest.fixture(scope="module")
def make_v2(v2_model, imagenet_labels):
    return lambda: Classifier.open(v2_model, imagenet_labels, num_threads=1)


def test_every_frame_of_a_file_is_classified_in_order(video, make_v2):
    results = []
    source = open_source(str(video))
    pipeline = Pipeline(source, make_v2, workers=2, on_result=results.append)
    pipeline.run()
    source.close()
    assert [r.frame.number for r in results] == list(range(1, 25))
    assert all(r.best.label == "Egyptian cat" and r.best.score >= 0.6 for r in results)
    assert set(STAGES) <= set(results[0].latency_ms)
    assert all(r.latency_ms["total"] >= r.latency_ms["infer"] > 0 for r in results)
    assert results[0].model == {"name": "mobilenet_v2_1.0_224_quant", "version": ""}
    stats = pipeline.stats()
    assert stats["frames"] == 24 and stats["dropped"] == 0 and stats["errors"] == 0 and stats["workers"] == 2
    assert {"p50", "p90", "p99"} <= set(stats["latency_ms"]["infer"])
    assert pipeline.latest is results[-1] and pipeline.source_ended


def test_max_frames_stops_early(video, make_v2):
    results = []
    source = open_source(str(video), loop=True)
    pipeline = Pipeline(source, make_v2, workers=2, on_result=results.append, max_frames=7)
    pipeline.run()
    source.close()
    assert [r.frame.number for r in results] == list(range(1, 8)) and not pipeline.source_ended


def test_live_source_keeps_the_newest_frame_and_counts_drops(tmp_path, images_dir, make_v2):
    for name in ("cat.bmp", "hot_dog.jpg", "dragonfly.bmp"):
        shutil.copy(images_dir / name, tmp_path / name)
    source = open_source(str(tmp_path), realtime=True, loop=True, fps=200)
    results = []

    depths = []

    def slow_consumer(result):
        results.append(result)
        depths.append(pipeline.stats()["queue"]["results"])
        time.sleep(0.03)  # a broker that cannot keep up must not make the camera queue grow

    pipeline = Pipeline(source, make_v2, workers=1, on_result=slow_consumer, max_frames=15)
    pipeline.run()
    source.close()
    numbers = [r.frame.number for r in results]
    assert numbers == sorted(numbers) and len(numbers) == 15
    assert pipeline.stats()["dropped"] > 0 and pipeline.stats()["queue"]["input"] <= 1
    assert max(depths) <= 2 * 1 + 2  # results wait in a bounded queue, not an ever-growing one


def test_swap_refuses_a_bad_model_and_keeps_the_old_one(tmp_path, video, make_v2, v1_model, imagenet_labels):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer" * 100)
    source = open_source(str(video), loop=True)
    seen = []
    pipeline = Pipeline(source, make_v2, workers=2, on_result=lambda r: seen.append(r.model["name"]), max_frames=60)
    import threading

    runner = threading.Thread(target=pipeline.run)
    runner.start()
    while len(seen) < 5:
        time.sleep(0.01)
    with pytest.raises(BundleError, match="bad.tflite"):
        pipeline.swap_classifiers(lambda: Classifier.open(bad, imagenet_labels))
    pipeline.swap_classifiers(lambda: Classifier.open(v1_model, imagenet_labels, num_threads=1))
    runner.join(30)
    source.close()
    assert seen[0] == "mobilenet_v2_1.0_224_quant" and seen[-1] == "mobilenet_v1_0.25_128_quant"
    assert pipeline.classifier.name == "mobilenet_v1_0.25_128_quant"


def test_a_failing_consumer_does_not_stop_classification(video, make_v2):
    calls = []

    def broken(result):
        calls.append(result.frame.number)
        raise RuntimeError("broker library bug")

    source = open_source(str(video))
    pipeline = Pipeline(source, make_v2, workers=2, on_result=broken)
    pipeline.run()
    source.close()
    assert calls == list(range(1, 25)) and pipeline.stats()["errors"] == 24


def test_stop_from_another_thread_returns_quickly(video, make_v2):
    source = open_source(str(video), loop=True, realtime=True)
    pipeline = Pipeline(source, make_v2, workers=2)
    import threading

    threading.Timer(0.5, pipeline.stop).start()
    t0 = time.monotonic()
    pipeline.run()
    source.close()
    assert time.monotonic() - t0 < 5 and not pipeline.alive()


def test_plan_uses_one_single_threaded_interpreter_per_core():
    assert plan_workers(4) == plan_workers(4, None)
    assert (plan_workers(4).workers, plan_workers(4).threads_per_worker) == (4, 1)
    assert (plan_workers(4, workers=1).workers, plan_workers(4, workers=1).threads_per_worker) == (1, 4)


def test_a_small_board_gets_two_interpreters_sharing_its_cores():
    """512 MB (a Pi Zero 2 W): two interpreters of two threads, not four of one (~7 MB each)."""
    assert plan_workers(4, memory_mb=512) == Plan(2, 2)
    assert plan_workers(4, memory_mb=4096) == Plan(4, 1)
    assert plan_workers(1, memory_mb=512) == Plan(1, 1)
    assert plan_workers(4, workers=4, memory_mb=512) == Plan(4, 1)  # what the user asks for wins
    assert plan_workers(4, workers=3) == Plan(3, 1)


# -- smoothing -------------------------------------------------------------------------------

INDEX = {"cat": 286, "dog": 207}


def top(*pairs) -> tuple[Prediction, ...]:
    return tuple(Prediction(INDEX[label], label, score) for label, score in pairs)


def test_state_needs_the_threshold_and_reports_unknown_below_it():
    smoother = StateSmoother(window=3, threshold=0.5, min_dwell=0.0)
    first = None
    for t in range(3):
        first = smoother.update(top(("cat", 0.3), ("dog", 0.2)), float(t)) or first
    assert first is not None and first.label == "none"
    changed = [smoother.update(top(("cat", 0.9)), 10.0 + t) for t in range(3)]
    labels = [c.label for c in changed if c]
    assert labels == ["cat"]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def feed(smoother: StateSmoother, clock: Clock, label: str, monotonic: float, wall: float):
    clock.now = monotonic
    return smoother.update(top((label, 0.9)), wall)


def test_min_dwell_suppresses_flicker():
    clock = Clock()
    smoother = StateSmoother(window=1, threshold=0.5, min_dwell=1.0, clock=clock)
    assert feed(smoother, clock, "cat", 0.0, 1000.0).label == "cat"
    # a single dog frame, then cat again: no state change
    assert feed(smoother, clock, "dog", 0.1, 1000.1) is None
    assert feed(smoother, clock, "cat", 0.2, 1000.2) is None
    # dog for longer than the dwell: one change, stamped (wall time) when it took effect
    changes = [feed(smoother, clock, "dog", 1.0 + 0.25 * i, 1001.0 + 0.25 * i) for i in range(6)]
    made = [c for c in changes if c]
    assert len(made) == 1 and made[0].label == "dog" and made[0].since == 1002.0
    assert smoother.current.label == "dog"


def test_a_wall_clock_jumping_back_an_hour_does_not_freeze_the_state():
    """NTP stepping the clock back (a Pi that booted offline) must not hold the old state for an hour."""
    clock = Clock()
    smoother = StateSmoother(window=1, threshold=0.5, min_dwell=1.0, clock=clock)
    assert feed(smoother, clock, "cat", 0.0, 10_000.0).label == "cat"
    assert feed(smoother, clock, "dog", 0.5, 10_000.5) is None  # the dog candidate appears...
    # ...then the wall clock steps back an hour while real (monotonic) time goes on by 1.5 s
    changed = feed(smoother, clock, "dog", 1.5, 10_001.5 - 3600)
    assert changed is not None and changed.label == "dog", "the dwell must run on the monotonic clock"
    assert changed.since == 10_001.5 - 3600  # the payload still carries the (new) wall time
    # and forwards: a wall clock jumping ahead an hour must not cut the dwell short
    assert feed(smoother, clock, "cat", 1.6, 20_000.0) is None
    assert feed(smoother, clock, "cat", 1.7, 20_000.0 + 3600) is None


def test_moving_average_outvotes_one_bad_frame():
    smoother = StateSmoother(window=5, threshold=0.4, min_dwell=0.0)
    for t in range(5):
        smoother.update(top(("cat", 0.8)), float(t))
    assert smoother.update(top(("dog", 0.95), ("cat", 0.05)), 5.0) is None
    assert smoother.current.label == "cat" and smoother.current.score == pytest.approx((0.8 * 4 + 0.05) / 5)


def test_a_crashing_source_ends_the_run_with_a_failure(video, make_v2):
    """A bug in a source (not a SourceError, which is reopened) must end the run visibly, not hang it."""
    inner = open_source(str(video), reopen=False)

    class Crashing(FakeSource):
        def read(self) -> Frame | None:
            frame = self.inner.read()
            if frame is not None and frame.number > 3:
                raise RuntimeError("driver bug")
            return frame

    results = []
    pipeline = Pipeline(Crashing(inner, "crashing"), make_v2, workers=2, on_result=results.append)
    pipeline.run()
    inner.close()
    assert len(results) == 3 and pipeline.failure == "capture stage failed: driver bug"


def test_health_needs_progress_unless_the_source_is_known_down(video, make_v2):
    """What the systemd watchdog is fed on: alive threads AND frames (or a source in reopen backoff)."""
    import threading

    gate = threading.Event()
    inner = open_source(str(video), reopen=False)

    class Wedged(FakeSource):
        live = True

        def read(self) -> Frame | None:
            frame = self.inner.read()
            if frame is not None and frame.number > 2:
                gate.wait(5)  # a driver stuck inside read()
                return None
            return frame

    source = Wedged(inner, "wedged")
    pipeline = Pipeline(source, make_v2, workers=1)
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    deadline = time.monotonic() + 30
    while pipeline.frames < 2:  # a pipeline that died at start fails here instead of hanging the suite
        assert runner.is_alive() and time.monotonic() < deadline, pipeline.failure
        time.sleep(0.01)
    assert pipeline.healthy(5.0)
    time.sleep(0.3)
    assert not pipeline.healthy(0.2)  # no frame for longer than allowed: stop feeding the watchdog
    source.failing_since = time.monotonic()
    assert pipeline.healthy(0.2)  # a known outage being retried is not a hang
    gate.set()
    runner.join(10)
    inner.close()


def test_latencies_do_not_follow_a_wall_clock_step(video, make_v2):
    """Frames stamped an hour off (NTP stepped the clock mid-run) still report millisecond latencies."""
    import dataclasses

    inner = open_source(str(video), reopen=False)

    class Stepped(FakeSource):
        def read(self) -> Frame | None:
            frame = self.inner.read()
            return None if frame is None else dataclasses.replace(frame, timestamp=frame.timestamp - 3600)

    results = []
    pipeline = Pipeline(Stepped(inner, "stepped"), make_v2, workers=1, on_result=results.append, max_frames=5)
    pipeline.run()
    inner.close()
    assert len(results) == 5
    for r in results:
        assert r.latency_ms["queue"] < 60_000 and r.latency_ms["total"] < 60_000, r.latency_ms
    assert results[0].frame.timestamp < time.time() - 3000  # the payload keeps the frame's wall time
