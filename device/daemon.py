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

from .. import __version__
from .classify import Classifier
from .config import Config
from .core.bundle import resolve_model
from .core.errors import EdgesightError, UsageError
from .core.signing import verify_bundle
from .deploy.receiver import Receiver, attach
from .deploy.store import Store
from .deploy.takeover import NO_KEYS, Gate, Hooks, Takeover
from .gate import gate_for
from .monitoring import DaemonHooks, Monitoring
from .mqtt.commands import CommandRefused, Dispatcher
from .mqtt.discovery import discovery_messages
from .mqtt.link import MqttLink
from .pipeline import Pipeline, plan_workers
from .results import Consumer, FrameResult, result_payload
from .runtimes.choice import kind_for_file
from .service import Notifier
from .smoothing import StateSmoother
from .snapshot import save_snapshot
from .sources import Backoff, Source, open_source
from .stats import LinkStatus, stats_payload
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.clock = clock  # durations (uptime, dwell, stats interval) never follow wall-clock steps
        self.started = clock()
        self.notifier = notifier or Notifier()
        m = config.model
        if not m.path:
            raise UsageError("no model: set [model] path in the config or pass --model")
        self.plan = plan_workers(workers=m.workers or None)
        self.threads = m.threads or self.plan.threads_per_worker
        self.store = Store(config.deploy.dir, config.deploy.keep) if config.deploy.enabled else None
        self._deploy_last: dict | None = None
        path, labels = self._boot_model()
        make = self.classifier_factory(path, labels)  # a bad model fails here, before the camera opens
        self._commands: queue.Queue[tuple[str, str]] = queue.Queue()
        self._dispatcher = Dispatcher({"reload": self._reload, "snapshot": lambda args: self._snapshot()})
        self._reloading: threading.Thread | None = None
        self.link = self._make_link()  # built before the camera opens: a bad [mqtt] key fails first
        self.source = self._open_source(wait_for_device)
        self.consumers: list[Consumer] = []
        gate = gate_for(config.gate, live=bool(self.source.live), min_dwell=config.state.min_dwell)
        self.pipeline = Pipeline(
            self.source,
            make,
            workers=self.plan.workers,
            on_result=self._fan_out,
            max_frames=max_frames,
            gate=gate,
            roi=config.source.roi,
        )
        st = config.state
        self.smoother = StateSmoother(
            st.window,
            st.threshold,
            st.min_dwell,
            st.unknown_label,
            clock=clock,
            class_thresholds=self.pipeline.classifier.thresholds,  # the bundle's, from a target precision
        )
        self._stop = threading.Event()
        self.stop_reason = ""
        self.state_changes = 0
        self._published = 0
        self._ran_s = 0.0
        self.consumers.append(self._publish)
        self.monitoring = Monitoring(  # status page, capture, drift: [http], [capture], [drift]
            http=config.http, capture=config.capture, drift=config.drift, hooks=self._hooks()
        )
        self.receiver = self._make_receiver()

    # -- deploy ([deploy] enabled) ----------------------------------------------------------------
    def _boot_model(self) -> tuple[str, str | None]:
        """The store's last good bundle when [deploy] recorded one (and it still verifies), else [model] path."""
        m = self.config.model
        record = self.store.read() if self.store else None
        entry = record.boot() if record else None
        if entry is None or not entry.path or entry.path == m.path:
            return m.path, m.labels
        try:
            if entry.sha256:  # a bundle that came through deploy: its signature still has to hold
                verify_bundle(entry.path, self.config.deploy.trusted_keys)
            resolve_model(entry.path, None, m.file)
        except EdgesightError as exc:
            log.error("deploy: recorded bundle %s no longer verifies (%s); booting [model] path", entry.path, exc)
            return m.path, m.labels
        log.info("deploy: booting the recorded bundle %s %s (%s)", entry.name, entry.version, entry.path)
        return entry.path, None

    def _make_receiver(self) -> Receiver | None:
        if self.store is None or self.link is None:
            return None
        d, m = self.config.deploy, self.config.model
        gate = Gate(
            trusted_keys=tuple(d.trusted_keys),
            shadow_frames=d.shadow_frames,
            shadow_timeout_s=d.shadow_timeout_s,
            min_agreement=d.min_agreement,
            min_fps_ratio=d.min_fps_ratio,
            watch_s=d.watch_s,
            runtime=m.runtime,
            threads=self.threads,
            trial_memory_mb=m.trial_memory_mb,
            trial_timeout_s=m.trial_timeout_s,
            max_bytes=int(d.max_bundle_mb * 1e6),
        )
        hooks = Hooks(
            publish=self._publish_deploy,
            factory=lambda path: self.classifier_factory(path, None),
            swap=self.pipeline.swap_classifiers,
            current=lambda: self.pipeline.classifier,
            add_consumer=self.consumers.append,
            remove_consumer=self.consumers.remove,
            fps=lambda: float(self.pipeline.stats().get("fps", 0.0)),
            healthy=self.pipeline.healthy,
            swapped=self._model_swapped,
            configured_model=m.path,
        )
        receiver = Receiver(
            self.store,
            Takeover(self.store, gate, hooks),
            self._publish_deploy,
            gate.max_bytes,
            pull_dir=d.pull_dir or None,
            pull_timeout_s=d.pull_timeout_s,
        )
        attach(self.link, self.link.topics, receiver, self._republish_deploy)  # link-owned subscriptions
        if not d.trusted_keys:
            log.warning("deploy: %s", NO_KEYS)
        return receiver

    def _publish_deploy(self, body: dict) -> None:
        self._deploy_last = body
        if self.link is not None:
            self.link.publish_json(self.link.topics.deploy, body, qos=1, retain=True)

    def _republish_deploy(self) -> None:
        if self._deploy_last is not None and self.link is not None:
            self.link.client.publish(self.link.topics.deploy, json.dumps(self._deploy_last), qos=1, retain=True)

    def _model_swapped(self) -> None:
        self.smoother.reset(self.pipeline.classifier.thresholds)
        self.monitoring.model_changed()
        if self.link:
            self.link.republish_discovery()

    def _make_link(self) -> MqttLink | None:
        if not self.config.mqtt.enabled:
            return None
        return MqttLink(
            self.config,
            on_command=lambda verb, text: self._commands.put((verb, text)),
            discovery=self._discovery,
        )

    def _open_source(self, wait_for_device: bool) -> Source:
        s = self.config.source
        return open_source(
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

    def _hooks(self) -> DaemonHooks:
        """What the monitoring pieces may read and call: no reference to the daemon itself."""
        return DaemonHooks(
            stats=self.stats_payload,
            state=lambda: self.smoother.current,
            classifier=lambda: self.pipeline.classifier,
            upload_classifier=self.upload_classifier,
            add_consumer=self.consumers.append,
            publish_alert=self._publish_alert,
        )

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

    def upload_classifier(self) -> Classifier:
        """A classifier of its own for POST /api/classify (the pipeline's are busy and not thread-safe).

        It runs the file the pipeline settled on, on that file's runtime, as the daemon's extra
        workers do: ``auto`` is not chosen again, nor an Edge TPU fallback warned about again.
        """
        m = self.config.model
        spec = self.pipeline.classifier.spec
        return Classifier.open(spec, runtime=kind_for_file(spec.model_path), num_threads=1, fit=m.crop, top_k=m.top_k)

    # -- consumers ------------------------------------------------------------------------------
    def _fan_out(self, result: FrameResult) -> None:
        for consumer in list(self.consumers):  # a copy: deploy's shadow adds and removes itself
            try:
                consumer(result)
            except Exception:  # noqa: BLE001 - one broken consumer must not starve the others
                log.exception("consumer %s failed", getattr(consumer, "__name__", consumer))

    def _publish(self, result: FrameResult) -> None:
        """The MQTT consumer: smoothed state on change, every Nth result."""
        changed = self.smoother.update(result.classification.top, result.frame.timestamp)
        if changed is not None:
            self.state_changes += 1
            log.info("state: %s (%.2f)", changed.label, changed.score)
            if self.link:
                self.link.publish_state({**changed.as_payload(), "frame": result.frame.number})
        every = self.config.mqtt.result_every
        self._published += 1
        if self.link and every and self._published % every == 0:
            self.link.publish_result(result_payload(result))

    def _publish_alert(self, payload: dict) -> None:
        if self.link is not None:
            self.link.publish_alert(payload)

    def _discovery(self) -> dict[str, dict]:
        c = self.pipeline.classifier
        assert self.link is not None  # only the link asks for its discovery messages
        return discovery_messages(
            self.link.topics,
            self.config.device_id,
            self.config.mqtt.discovery_prefix,
            model=f"{c.name} {c.version}".strip(),
            sw_version=__version__,
        )

    # -- stats ----------------------------------------------------------------------------------
    def stats_payload(self) -> dict:
        return stats_payload(
            self.pipeline.stats(),
            classifier=self.pipeline.classifier,
            uptime_s=self.clock() - self.started,
            threads_per_worker=self.threads,
            state=self.smoother.current,
            link=(
                LinkStatus(True, self.link.connected, self.link.reconnects, self.link.counters())
                if self.link
                else LinkStatus()
            ),
            extra=self.monitoring.stats(),
        )

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
            if self.link:  # the exception's text may hold paths or data: the broker gets only its class
                self.link.reply(verb, False, error=f"failed ({type(exc).__name__}); see the device log")

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
        self.smoother.reset(self.pipeline.classifier.thresholds)
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
        saved = save_snapshot(latest, self.config.snapshot, self.config.device_id)
        log.info("snapshot saved: %s", saved.image)
        if self.link:
            self.link.reply("snapshot", True, image=str(saved.image), result=str(saved.result), frame=saved.frame)

    # -- life -----------------------------------------------------------------------------------
    def request_stop(self, reason: str = "") -> None:
        """Safe from a signal handler: only sets flags."""
        self.stop_reason = reason
        self._stop.set()
        self.pipeline.stop()

    def run(self, announce: Callable[[str], None] | None = None) -> int:
        """Classify until the source ends, ``max_frames`` or :meth:`request_stop`; return the exit code.

        ``announce`` gets :meth:`describe` once everything listens (the CLI prints it for a person).
        """
        began = self.clock()
        worker = self._start()
        if announce is not None:
            announce(self.describe())
        self._serve(worker)
        self._shut_down(worker)
        self._ran_s = self.clock() - began
        return self._exit_code()

    def describe(self) -> str:
        """One line saying what this run does: model, runtime, source, MQTT, status page."""
        c = self.pipeline.classifier
        m = self.config.mqtt
        mqtt = f"MQTT {m.host}:{m.port} as {self.config.topic_prefix}" if self.link else "MQTT off"
        url = self.monitoring.url
        return (
            f"edgesight run: {c.name}{f' {c.version}' if c.version else ''} on {c.runtime.name} "
            f"({self.pipeline.workers} worker(s)), source {self.source.name}, {mqtt}"
            f"{f', status page {url}' if url else ''}"
        )

    def summary(self) -> str:
        """One line for the end of a run: frames, rate, state changes, run time, why it stopped."""
        frames = self.pipeline.frames
        fps = frames / self._ran_s if self._ran_s > 0 else 0.0
        why = self.pipeline.failure if self.pipeline.failure and not self.stop_reason else self._why_stopped()
        return (
            f"edgesight run: {frames} frame(s) classified in {self._ran_s:.1f} s ({fps:.1f} fps), "
            f"{f'{gate.gated} gated (unchanged), ' if (gate := self.pipeline.gate) is not None else ''}"
            f"{self.state_changes} state change(s); stopped: {why}"
        )

    def _why_stopped(self) -> str:
        return self.stop_reason or ("source ended" if self.pipeline.source_ended else "max frames")

    def _start(self) -> threading.Thread:
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
        return worker

    def _serve(self, worker: threading.Thread) -> None:
        """The main loop: commands, periodic stats and the systemd watchdog, all on monotonic time."""
        interval = self.config.mqtt.stats_interval
        next_stats = self.clock() + min(interval, 2.0)
        next_ping = self.clock()
        while worker.is_alive() and not self._stop.is_set():
            try:
                verb, text = self._commands.get(timeout=0.1)
                self._handle(verb, text)
            except queue.Empty:
                pass
            now = self.clock()
            if now >= next_stats:
                next_stats = now + interval
                self._report()
            if self._watchdog_due(now, next_ping):
                self.notifier.watchdog()
                next_ping = now + (self.notifier.watchdog_interval or 0.0)

    def _watchdog_due(self, now: float, next_ping: float) -> bool:
        interval = self.notifier.watchdog_interval
        return bool(interval) and now >= next_ping and self.pipeline.healthy(max(10.0, 4 * (interval or 0.0)))

    def _shut_down(self, worker: threading.Thread) -> None:
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

    def _exit_code(self) -> int:
        if self.pipeline.failure and not self.stop_reason:
            log.error("stopped after %d frames: %s", self.pipeline.frames, self.pipeline.failure)
            return self.pipeline.failure_code  # 2: the config's fault ([source] roi), 1: a stage died
        log.info("stopped after %d frames (%s)", self.pipeline.frames, self._why_stopped())
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
