"""The daemon: config -> source -> pipeline -> consumers (MQTT, ...), commands, stats, systemd.

Each classified frame is fanned out to ``Daemon.consumers``, a plain list of callables run on
the pipeline's publisher thread in frame order. Adding a consumer (a status page, a retraining
capture writer, a drift monitor) is one ``daemon.consumers.append(fn)``; a consumer that does
slow I/O must hand the work to its own thread, or it delays the next results.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2

from .. import __version__
from .classify import Classifier
from .config import Config
from .core.bundle import resolve_model
from .core.errors import EdgesightError, UsageError
from .core.preprocess import to_bgr
from .machine import cpu_temperature_c, memory_rss_mb
from .monitoring import Monitoring
from .mqtt.commands import CommandRefused, Dispatcher
from .mqtt.discovery import discovery_messages
from .mqtt.link import MqttLink
from .pipeline import Pipeline, plan_workers
from .results import FrameResult, result_payload
from .runtimes.choice import kind_for_file
from .service import Notifier
from .smoothing import StateSmoother
from .sources import Backoff, open_source
from .trial import bundle_in_models_dir, run_trial

log = logging.getLogger(__name__)


class Daemon:
    """Owns the pieces for one run; :meth:`run` blocks until stopped and returns the exit code."""

    def __init__(
        self,
        config: Config,
        *,
        max_frames: int | None = None,
        notifier: Notifier | None = None,
        wait_for_device: bool = True,
    ) -> None:
        self.config = config
        self.started = time.monotonic()
        self.notifier = notifier or Notifier()
        m, s = config.model, config.source
        if not m.path:
            raise UsageError("no model: set [model] path in the config or pass --model")
        self.plan = plan_workers(workers=m.workers or None)
        self.threads = m.threads or self.plan.threads_per_worker
        make = self.classifier_factory(m.path, m.labels)  # a bad model fails here, before the camera opens
        self._commands: queue.Queue[tuple[str, str]] = queue.Queue()
        self._dispatcher = Dispatcher({"reload": self._reload, "snapshot": lambda args: self._snapshot()})
        self._reloading: threading.Thread | None = None
        self.link: MqttLink | None = None  # built before the camera opens: a bad [mqtt] key fails first
        if config.mqtt.enabled:
            self.link = MqttLink(
                config, on_command=lambda verb, text: self._commands.put((verb, text)), discovery=self._discovery
            )
        self.source = open_source(
            s.spec,
            realtime=s.realtime,
            loop=s.loop,
            backoff=Backoff(s.reopen_initial, s.reopen_max),
            wait_for_device=wait_for_device,
            width=s.width or None,
            height=s.height or None,
            fps=s.fps or None,
            stream=s.stream,
        )
        self.consumers: list[Callable[[FrameResult], None]] = []
        self.pipeline = Pipeline(
            self.source, make, workers=self.plan.workers, on_result=self._fan_out, max_frames=max_frames
        )
        st = config.state
        self.smoother = StateSmoother(st.window, st.threshold, st.min_dwell, st.unknown_label)
        self._stop = threading.Event()
        self.stop_reason = ""
        self.consumers.append(self._publish)
        self.monitoring = Monitoring(self)  # status page, capture, drift: [http], [capture], [drift]
        self._published = 0

    # -- model ----------------------------------------------------------------------------------
    def classifier_factory(self, path: str, labels: str | None = None) -> Callable[[], Classifier]:
        """Verify the bundle once and return a function that builds one classifier per worker."""
        m = self.config.model
        spec = resolve_model(path, labels, m.file)
        fit = m.crop  # centre/center/stretch: InputContract.with_fit settles the spelling
        probe = Classifier.open(spec, runtime=m.runtime, num_threads=self.threads, fit=fit, top_k=m.top_k)
        spare = [probe]  # the probe (which proves the model loads) becomes worker 0's classifier
        # The other workers take what the probe settled on ("auto" or a TPU fallback decided once, warned once).
        runtime = kind_for_file(probe.spec.model_path)

        def make() -> Classifier:
            if spare:
                return spare.pop()
            return Classifier.open(spec, runtime=runtime, num_threads=self.threads, fit=fit, top_k=m.top_k)

        return make

    # -- consumers ------------------------------------------------------------------------------
    def _fan_out(self, result: FrameResult) -> None:
        for consumer in self.consumers:
            try:
                consumer(result)
            except Exception:  # noqa: BLE001 - one broken consumer must not starve the others
                log.exception("consumer %s failed", getattr(consumer, "__name__", consumer))

    def _publish(self, result: FrameResult) -> None:
        """The MQTT consumer: smoothed state on change, every Nth result."""
        changed = self.smoother.update(result.classification.top, result.frame.timestamp)
        if changed is not None:
            log.info("state: %s (%.2f)", changed.label, changed.score)
            if self.link:
                self.link.publish_state({**changed.as_payload(), "frame": result.frame.number})
        every = self.config.mqtt.result_every
        self._published += 1
        if self.link and every and self._published % every == 0:
            self.link.publish_result(result_payload(result))

    def _discovery(self) -> dict[str, dict]:
        c = self.pipeline.classifier
        return discovery_messages(
            self.link.topics,
            self.config.device_id,
            self.config.mqtt.discovery_prefix,
            model=f"{c.name} {c.version}".strip(),
            sw_version=__version__,
        )

    # -- stats ----------------------------------------------------------------------------------
    def stats_payload(self) -> dict:
        c = self.pipeline.classifier
        stats = self.pipeline.stats()
        current = self.smoother.current
        return {
            "v": 1,
            "timestamp": round(time.time(), 3),
            "uptime_s": round(time.monotonic() - self.started, 1),
            **stats,
            "threads_per_worker": self.threads,
            "runtime": {"name": c.runtime.name, "version": c.runtime.version},
            "model": {"name": c.name, "version": c.version},
            "state": current.label if current else None,
            "mqtt": {
                "connected": bool(self.link and self.link.connected),
                "reconnects": self.link.reconnects if self.link else 0,
            },
            "memory_rss_mb": memory_rss_mb(),
            "cpu_temp_c": cpu_temperature_c(),
            **self.monitoring.stats(),
        }

    # -- commands -------------------------------------------------------------------------------
    def _handle(self, verb: str, text: str) -> None:
        """Run one command from the queue (verbs, payloads and handlers: mqtt/commands.py's table)."""
        try:
            self._dispatcher.dispatch(verb, text)
        except CommandRefused as exc:
            self._refused(verb, exc)
        except EdgesightError as exc:
            log.error("cmd/%s refused: %s", verb, exc)
            if self.link:
                self.link.reply(verb, False, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a command must never take the daemon down (disk full...)
            log.exception("cmd/%s failed", verb)
            if self.link:
                self.link.reply(verb, False, error=f"{type(exc).__name__}: {exc}")

    def _refused(self, verb: str, exc: CommandRefused) -> None:
        """The detail to the local log; only the generic reply to the broker."""
        log.warning("cmd/%s refused: %s", verb, exc.detail)
        if self.link:
            self.link.reply(verb, False, error=exc.reply)

    def _reload(self, args: dict[str, str]) -> None:
        """Start a reload in the background: the trial may take seconds, the main loop must not wait.

        A payload names a bundle folder under ``[model] models_dir``; an empty one reloads the
        configured ``[model] path`` (set locally, so it may be a bare model with labels).
        """
        if self._reloading is not None and self._reloading.is_alive():
            raise CommandRefused("refused: a reload is already running")
        m = self.config.model
        name = args.get("bundle", "")
        if name:
            path, labels = str(bundle_in_models_dir(m.models_dir, name)), None
        else:
            path, labels = m.path, m.labels
        self._reloading = threading.Thread(target=self._reload_now, args=(path, labels), name="reload", daemon=True)
        self._reloading.start()

    def _reload_now(self, path: str, labels: str | None) -> None:
        """Verify, try in a child process, then swap; on any refusal the running model keeps serving."""
        m = self.config.model
        log.info("cmd/reload: verifying and trying %s", path)
        try:
            try:
                resolve_model(path, labels, m.file)  # hashes and manifest, before anything runs
            except EdgesightError as exc:
                raise CommandRefused("refused: not a bundle under models_dir", f"{path}: {exc}") from None
            trial = run_trial(
                Path(path),
                labels=labels,
                model_file=m.file,
                runtime=m.runtime,
                threads=self.threads,
                fit=m.crop,
                memory_mb=m.trial_memory_mb,
                timeout_s=m.trial_timeout_s,
            )
            log.info(
                "cmd/reload: trial passed (load %.0f ms, first frame %.0f ms, peak %.0f MB)",
                trial.load_ms,
                trial.frame_ms,
                trial.peak_rss_mb,
            )
            classifier = self.pipeline.swap_classifiers(self.classifier_factory(path, labels))
        except CommandRefused as exc:
            self._refused("reload", exc)
            return
        except EdgesightError as exc:
            log.error("cmd/reload refused: %s", exc)
            if self.link:
                self.link.reply("reload", False, error="refused: the bundle failed to load")
            return
        except Exception:  # noqa: BLE001 - a reload must never take the daemon down
            log.exception("cmd/reload failed")
            if self.link:
                self.link.reply("reload", False, error="refused: the bundle failed to load")
            return
        self.smoother.reset()
        self.monitoring.model_changed()
        if self.link:
            self.link.reply(
                "reload", True, model={"name": classifier.name, "version": classifier.version, "path": str(path)}
            )
            self.link.republish_discovery()

    def _snapshot(self) -> None:
        latest = self.pipeline.latest
        if latest is None:
            raise EdgesightError("cmd/snapshot: no frame classified yet")
        folder = Path(self.config.snapshot.dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgesightError(f"[snapshot] dir: cannot create {folder} ({exc.strerror})") from None
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(latest.frame.timestamp))
        base = folder / f"{self.config.device_id}-{stamp}-{latest.frame.number:08d}"
        image = to_bgr(latest.frame.image, latest.frame.order)
        if not cv2.imwrite(
            str(base.with_suffix(".jpg")), image, [cv2.IMWRITE_JPEG_QUALITY, self.config.snapshot.quality]
        ):
            raise EdgesightError(f"[snapshot] dir: cannot write {base.with_suffix('.jpg')}")
        base.with_suffix(".json").write_text(json.dumps(result_payload(latest), indent=2) + "\n", encoding="utf-8")
        log.info("snapshot saved: %s.jpg", base)
        if self.link:
            self.link.reply(
                "snapshot",
                True,
                image=str(base.with_suffix(".jpg")),
                result=str(base.with_suffix(".json")),
                frame=latest.frame.number,
            )

    # -- life -----------------------------------------------------------------------------------
    def request_stop(self, reason: str = "") -> None:
        """Safe from a signal handler: only sets flags."""
        self.stop_reason = reason
        self._stop.set()
        self.pipeline.stop()

    def run(self) -> int:
        c = self.pipeline.classifier
        log.info(
            "edgesight run: %s%s on %s %s, %d worker(s) x %d thread(s), source %s",
            c.name,
            f" {c.version}" if c.version else "",
            c.runtime.name,
            c.runtime.version,
            self.pipeline.workers,
            self.threads,
            self.source.name,
        )
        self.monitoring.start()
        if self.link:
            self.link.start()
        worker = threading.Thread(target=self.pipeline.run, name="pipeline", daemon=True)
        worker.start()
        self.notifier.ready(f"classifying {self.source.name} with {c.name}")
        interval = self.config.mqtt.stats_interval
        next_stats = time.monotonic() + min(interval, 2.0)
        next_ping = time.monotonic()
        while worker.is_alive() and not self._stop.is_set():
            try:
                verb, text = self._commands.get(timeout=0.1)
                self._handle(verb, text)
            except queue.Empty:
                pass
            now = time.monotonic()
            if now >= next_stats:
                next_stats = now + interval
                self._report()
            if (
                self.notifier.watchdog_interval
                and now >= next_ping
                and self.pipeline.healthy(max(10.0, 4 * self.notifier.watchdog_interval))
            ):
                self.notifier.watchdog()
                next_ping = now + self.notifier.watchdog_interval
        self.notifier.stopping(self.stop_reason or ("source ended" if self.pipeline.source_ended else "stopping"))
        self.pipeline.stop()
        worker.join(timeout=1.2)
        self.monitoring.close()
        self._report()
        if self.link:
            self.link.stop()
        if self.pipeline.capturing():
            # closing a VideoCapture/camera while its read() runs in another thread can crash the
            # native library; the process is about to exit and the OS releases the device anyway
            log.debug("capture still inside read(); leaving the device to be released at exit")
        else:
            self.source.close()
        if self.pipeline.failure and not self.stop_reason:
            log.error("stopped after %d frames: %s", self.pipeline.frames, self.pipeline.failure)
            return 1
        log.info(
            "stopped after %d frames (%s)",
            self.pipeline.frames,
            self.stop_reason or ("source ended" if self.pipeline.source_ended else "max frames"),
        )
        return 0

    def _report(self) -> None:
        payload = self.stats_payload()
        total = payload["latency_ms"].get("total", {}).get("p50")
        summary = (
            f"{payload['fps']:.1f} fps, {payload['frames']} frames, {payload['dropped']} dropped, "
            f"state {payload['state']}, latency p50 {total} ms"
        )
        log.info("stats: %s", summary)
        self.notifier.status(summary)
        if self.link:
            self.link.publish_stats(payload)
