"""Closing the loop on the device: status page + HTTP API, capture for retraining, drift alert.

Built from the ``[http]``, ``[capture]`` and ``[drift]`` config sections and attached to a
:class:`~edgesight.device.daemon.Daemon` as frame-result consumers. Each consumer does O(1)
work on the pipeline's publisher thread; HTTP encoding runs in the server's threads and
capture writing in the capture writer's thread.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .capture import CaptureSettings, CaptureWriter
from .classify import Classifier
from .core.errors import ConfigError
from .core.tomlfile import read_secret
from .drift import DriftMonitor, Reference
from .runtimes.choice import kind_for_file

if TYPE_CHECKING:
    from .daemon import Daemon
    from .http import StatusBoard, StatusServer

log = logging.getLogger(__name__)


def read_token(section: Any) -> str | None:
    """The HTTP token from ``token`` or the first line of ``token_file``."""
    if section.token_file:
        token = read_secret(section.token_file, "[http] token_file")
        if not token:
            raise ConfigError(f"[http] token_file: {section.token_file} starts with an empty line")
        return token
    return section.token or None


class Monitoring:
    """The daemon's status board/server, capture writer and drift monitor (each optional)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        config = daemon.config
        self.board: StatusBoard | None = None
        self.server: StatusServer | None = None
        self.capture: CaptureWriter | None = None
        self.drift: DriftMonitor | None = None
        h = config.http
        if h.enabled:
            from .http import HttpSettings, StatusBoard, StatusServer  # only a daemon with [http] pays for it

            settings = HttpSettings(
                enabled=True,
                host=h.host,
                port=h.port,
                token=read_token(h),
                max_upload_mb=h.max_upload_mb,
                mjpeg_fps=h.mjpeg_fps,
                max_streams=h.max_streams,
                jpeg_quality=h.jpeg_quality,
                stale_after_s=h.stale_after_s,
            )
            self.board = StatusBoard(daemon.stats_payload, state=self._state_payload, stale_after_s=h.stale_after_s)
            self.server = StatusServer(self.board, settings, self._upload_classifier)  # checks host vs token
            daemon.consumers.append(self.board)
        c = config.capture
        if c.enabled:
            self.capture = CaptureWriter(
                CaptureSettings(
                    Path(c.dir),
                    low_score=c.low_score,
                    on_state_change=c.on_state_change,
                    min_interval_s=c.min_interval_s,
                    max_mb=c.max_mb,
                    min_free_mb=c.min_free_mb,
                    jpeg_quality=c.jpeg_quality,
                ),
                current_state=self._state_label,
            )
            daemon.consumers.append(self.capture)
        if config.drift.enabled:
            daemon.consumers.append(self._drift_consumer)
        self.model_changed()

    # -- providers the consumers read --------------------------------------------------------------
    def _state_payload(self) -> dict | None:
        current = self.daemon.smoother.current
        return current.as_payload() if current else None

    def _state_label(self) -> str | None:
        current = self.daemon.smoother.current
        return current.label if current else None

    def _upload_classifier(self) -> Classifier:
        """A classifier of its own for POST /api/classify (the pipeline's are busy and not thread-safe).

        It runs the file the pipeline settled on, on that file's runtime, as the daemon's extra
        workers do: ``auto`` is not chosen again, nor an Edge TPU fallback warned about again.
        """
        m = self.daemon.config.model
        spec = self.daemon.pipeline.classifier.spec
        return Classifier.open(spec, runtime=kind_for_file(spec.model_path), num_threads=1, fit=m.crop, top_k=m.top_k)

    def _drift_consumer(self, result: Any) -> None:
        if self.drift is not None:
            self.drift(result)

    def _publish_alert(self, payload: dict) -> None:
        link = self.daemon.link
        if link is not None:
            link.publish_alert(payload)

    # -- life -----------------------------------------------------------------------------------------
    def model_changed(self) -> None:
        """At start and after cmd/reload: show the new model, use it for uploads, new drift reference."""
        classifier = self.daemon.pipeline.classifier
        if self.board is not None:
            self.board.set_model(classifier.spec, classifier.runtime)
        if self.server is not None:
            self.server.set_classifier_factory(self._upload_classifier)
        d = self.daemon.config.drift
        if not d.enabled:
            return
        reference = Reference.from_manifest(classifier.spec.manifest)
        if reference is None:
            if self.drift is not None and self.drift.active:
                self._publish_alert(
                    {
                        **self.drift.alert_payload(),
                        "active": False,
                        "message": "model reloaded without a test_distribution; drift monitoring off",
                    }
                )
            self.drift = None
            log.info("drift monitoring off: %s has no test_distribution in its manifest", classifier.name)
            return
        self.drift = DriftMonitor(
            reference,
            window=d.window,
            bound=d.bound,
            clear_below=d.clear_below,
            min_samples=d.min_samples,
            check_every=d.check_every,
            on_alert=self._publish_alert,
        )
        log.info("drift monitoring on: window %d frames, bound %.2f (Jensen-Shannon distance)", d.window, d.bound)

    def start(self) -> None:
        if self.server is not None:
            self.server.start()

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.capture is not None:
            self.capture.close()

    def stats(self) -> dict[str, Any]:
        """Figures for ``<prefix>/stats`` and /api/stats (must not call back into the board)."""
        out: dict[str, Any] = {}
        if self.drift is not None:
            out["drift"] = self.drift.stats()
        if self.capture is not None:
            out["capture"] = self.capture.stats()
        if self.server is not None and self.server.httpd is not None:
            out["http"] = {"url": self.server.url}
        return out
