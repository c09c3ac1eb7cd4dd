"""A received bundle takes over: verify -> trial -> self-test -> shadow -> switch -> watch -> rollback.

Every step publishes a retained ``<prefix>/deploy`` message. The running model serves throughout:
the trial runs in a child process, the self-test and the shadow classifier run on this thread
(the shadow reads frames handed over by a consumer, through a queue that drops when this thread is
behind, so the pipeline never waits for it), and the switch is the pipeline's own
``swap_classifiers``. Any refusal leaves the old model running; a failure during the watch swaps
the previous bundle back in.
"""

from __future__ import annotations

import logging
import queue
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..classify import Classifier
from ..core.errors import EdgesightError
from ..core.signing import verify_bundle
from ..mqtt.commands import CommandRefused
from ..results import FrameResult
from ..selftest import run_self_test
from ..trial import run_trial
from .protocol import Offer, progress
from .store import Entry, Record, Store, extract

log = logging.getLogger(__name__)

NO_KEYS = (
    "[deploy] trusted_keys is empty: a device only takes deployed bundles signed by a key it trusts; "
    "list the deploy.pub files there"
)


class Refused(EdgesightError):
    """A step said no; the message is the ``reason`` published."""


@dataclass
class Hooks:
    """What the take-over may read and call in the daemon (no reference to the daemon itself)."""

    publish: Callable[[dict[str, Any]], None]
    factory: Callable[[str], Callable[[], Classifier]]  # bundle path -> per-worker classifier maker
    swap: Callable[[Callable[[], Classifier]], Classifier]
    current: Callable[[], Classifier]
    add_consumer: Callable[[Callable[[FrameResult], None]], None]
    remove_consumer: Callable[[Callable[[FrameResult], None]], None]
    fps: Callable[[], float]
    healthy: Callable[[float], bool]
    swapped: Callable[[], None]  # reset smoothing, tell monitoring, republish discovery
    configured_model: str = ""  # [model] path: what a rollback with no previous bundle returns to


@dataclass(frozen=True)
class Gate:
    """The [deploy] floors and limits the take-over applies."""

    trusted_keys: tuple[str, ...]
    shadow_frames: int = 30
    shadow_timeout_s: float = 120.0
    min_agreement: float = 0.9
    min_fps_ratio: float = 0.5
    watch_s: float = 10.0
    runtime: str = "auto"
    threads: int = 1
    trial_memory_mb: int = 1024
    trial_timeout_s: float = 60.0
    max_bytes: int = 200_000_000


@dataclass(frozen=True)
class Shadow:
    """What the shadow phase measured."""

    frames: int
    agreement: float
    new_ms: float
    old_ms: float
    new_scores: tuple[float, ...] = ()  # top-1 score of each shadow frame, new model
    old_scores: tuple[float, ...] = ()  # and of the running model on the same frames

    def score_summary(self) -> dict[str, float]:
        """Mean and quartiles of the top-1 scores, old vs new: a model that agrees but is far less sure shows here."""
        out: dict[str, float] = {}
        for key, values in (("score", self.new_scores), ("old_score", self.old_scores)):
            if values:
                ordered = sorted(values)
                out[f"{key}_mean"] = round(sum(ordered) / len(ordered), 4)
                for q in (25, 50, 75):
                    out[f"{key}_p{q}"] = round(ordered[min(len(ordered) - 1, len(ordered) * q // 100)], 4)
        return out

    @property
    def fps_ratio(self) -> float:
        return self.old_ms / self.new_ms if self.new_ms > 0 else 1.0


def _stage_ms(latency: dict[str, float]) -> float:
    return sum(latency.get(k, 0.0) for k in ("preprocess", "infer", "postprocess"))


class Takeover:
    """Runs one received bundle through every step; :meth:`run` never raises."""

    def __init__(self, store: Store, gate: Gate, hooks: Hooks) -> None:
        self.store, self.gate, self.hooks = store, gate, hooks

    def _say(self, offer: Offer, state: str, reason: str = "", **measured: Any) -> None:
        log.info("deploy %s %s: %s%s", offer.name, offer.version, state, f" ({reason})" if reason else "")
        self.hooks.publish(progress(offer, state, reason, **measured))

    def run(self, offer: Offer, tar_path: Path) -> str:
        """Take the bundle in ``tar_path`` through the gate; return the final state."""
        work = tar_path.with_suffix(".d")
        try:
            self._say(offer, "verifying")
            entry = self._verify(offer, tar_path, work)
        except (Refused, EdgesightError) as exc:
            shutil.rmtree(work, ignore_errors=True)
            self._say(offer, "refused", str(exc))
            return "refused"
        finally:
            tar_path.unlink(missing_ok=True)
        try:
            return self._take_over(offer, entry)
        except Exception as exc:  # noqa: BLE001 - a deploy must never take the daemon down
            log.exception("deploy failed")
            self._say(offer, "refused", f"{type(exc).__name__}: {exc}")
            return "refused"

    # -- steps ----------------------------------------------------------------------------------
    def _verify(self, offer: Offer, tar_path: Path, work: Path) -> Entry:
        g = self.gate
        if not g.trusted_keys:
            raise Refused(NO_KEYS)
        shutil.rmtree(work, ignore_errors=True)
        extract(tar_path, work, g.max_bytes * 4)
        verify_bundle(work, g.trusted_keys)  # signature, then every file's hash (named when it differs)
        try:
            run_trial(
                work,
                runtime=g.runtime,
                threads=g.threads,
                memory_mb=g.trial_memory_mb,
                timeout_s=g.trial_timeout_s,
            )
        except CommandRefused as exc:
            raise Refused(f"{exc.reply.removeprefix('refused: ')} ({exc.detail[-200:]})") from None
        test = run_self_test(work, runtime=g.runtime)
        if not test.passed:
            raise Refused(test.reason)
        return self.store.place(work, offer.name, offer.version, offer.sha256)

    def _take_over(self, offer: Offer, entry: Entry) -> str:
        g = self.gate
        make = self.hooks.factory(entry.path)
        shadow_classifier = make()
        self._say(offer, "shadow", f"classifying {g.shadow_frames} live frames beside the running model")
        shadow = self._shadow(shadow_classifier)
        measured = {
            "agreement": round(shadow.agreement, 4),
            "latency_ms": round(shadow.new_ms, 2),
            "old_latency_ms": round(shadow.old_ms, 2),
            "shadow_frames": shadow.frames,
            **shadow.score_summary(),
        }
        if shadow.frames < g.shadow_frames:
            return self._refuse(
                offer, f"shadow saw {shadow.frames} of {g.shadow_frames} frames in {g.shadow_timeout_s:g} s", measured
            )
        if shadow.agreement < g.min_agreement:
            return self._refuse(
                offer,
                f"shadow agreement {shadow.agreement:.2f} is below [deploy] min_agreement {g.min_agreement:g}",
                measured,
            )
        if g.min_fps_ratio and shadow.fps_ratio < g.min_fps_ratio:
            return self._refuse(
                offer,
                f"shadow latency {shadow.new_ms:.1f} ms vs {shadow.old_ms:.1f} ms: fps ratio {shadow.fps_ratio:.2f} "
                f"below [deploy] min_fps_ratio {g.min_fps_ratio:g}",
                measured,
            )
        spare = [shadow_classifier]  # the shadow's classifier becomes worker 0's

        def workers() -> Classifier:
            return spare.pop() if spare else make()

        before = self.store.read()
        previous = before.boot() if before else None
        fps_before = self.hooks.fps()
        self.store.write(Record(entry, previous or Entry(self.hooks.configured_model), confirmed=False))
        self.hooks.swap(workers)
        self.hooks.swapped()
        failure = self._watch(fps_before)
        if failure:
            self._roll_back(previous)
            self._say(offer, "rolled_back", failure, **measured)
            return "rolled_back"
        self.store.write(Record(entry, previous, confirmed=True))
        self.store.prune()
        self._say(offer, "active", f"took over after {shadow.frames} shadow frames", **measured)
        return "active"

    def _refuse(self, offer: Offer, reason: str, measured: dict[str, Any]) -> str:
        self._say(offer, "refused", reason, **measured)
        return "refused"

    def _shadow(self, classifier: Classifier) -> Shadow:
        """Classify live frames with the new model beside the running one, off the pipeline's threads."""
        g = self.gate
        frames: queue.Queue[FrameResult] = queue.Queue(maxsize=2)

        def feed(result: FrameResult) -> None:
            try:
                frames.put_nowait(result)
            except queue.Full:
                pass  # the shadow is behind: skip this frame rather than slow the pipeline

        agree = seen = 0
        new_ms = old_ms = 0.0
        new_scores: list[float] = []
        old_scores: list[float] = []
        deadline = time.monotonic() + g.shadow_timeout_s
        self.hooks.add_consumer(feed)
        try:
            while seen < g.shadow_frames and time.monotonic() < deadline:
                try:
                    result = frames.get(timeout=0.5)
                except queue.Empty:
                    continue
                mine = classifier.classify(result.frame.image, getattr(result.frame, "order", "BGR"), k=1)
                seen += 1
                agree += int(
                    bool(result.classification.top) and mine.top[0].label == result.classification.top[0].label
                )
                if mine.top:
                    new_scores.append(float(mine.top[0].score))
                if result.classification.top:
                    old_scores.append(float(result.classification.top[0].score))
                new_ms += _stage_ms(mine.latency_ms)
                old_ms += _stage_ms(result.classification.latency_ms)
        finally:
            self.hooks.remove_consumer(feed)
        n = max(1, seen)
        return Shadow(seen, agree / n if seen else 0.0, new_ms / n, old_ms / n, tuple(new_scores), tuple(old_scores))

    def _watch(self, fps_before: float) -> str:
        """Watch the pipeline for ``watch_s``; return why it failed, or ''.

        Two kinds of stall fail it: the pipeline silent for half the watch (no frame classified or
        gated: a wedged camera driver), and the whole process frozen that long (a thermal stall,
        swapping, a stopped process), which shows as this loop's own tick arriving that late. The
        second is checked by the clock because after such a freeze the pipeline may publish a frame
        before this thread looks again, and its silence would be gone.
        """
        g = self.gate
        limit = max(2.0, g.watch_s / 2)
        end = time.monotonic() + g.watch_s
        last_tick = time.monotonic()
        while last_tick < end:
            time.sleep(min(0.25, max(0.0, end - last_tick)))
            now = time.monotonic()
            if now - last_tick >= limit:
                return f"the device stalled for {now - last_tick:.1f} s during the watch after the switch"
            last_tick = now
            if not self.hooks.healthy(limit):
                return "no frame classified during the watch after the switch"
        fps = self.hooks.fps()
        if g.watch_s and g.min_fps_ratio and fps_before > 0 and fps < g.min_fps_ratio * fps_before:
            return f"fps fell from {fps_before:.1f} to {fps:.1f} after the switch (floor {g.min_fps_ratio:g}x)"
        return ""

    def _roll_back(self, previous: Entry | None) -> None:
        path = previous.path if previous else self.hooks.configured_model
        log.warning("deploy: rolling back to %s", path)
        self.hooks.swap(self.hooks.factory(path))
        self.hooks.swapped()
        # the record names what runs again, confirmed: a restart boots it, not the bundle that failed
        back = previous if previous is not None else Entry(self.hooks.configured_model)
        self.store.write(Record(back, None, confirmed=True))
