"""Closing the loop on the device: status page + HTTP API, capture for retraining, drift alert.

Built from the typed ``[http]``, ``[capture]`` and ``[drift]`` config sections and a
:class:`DaemonHooks` of callables -- never the daemon itself, so this module does not import
``daemon.py`` and the daemon can import it. Each consumer does O(1) work on the pipeline's
publisher thread; HTTP encoding runs in the server's threads and capture writing in the capture
writer's thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .capture import CaptureSettings, CaptureWriter
from .classify import Classifier
from .drift import DriftMonitor, Reference
from .results import Consumer, FrameResult
from .smoothing import State

if TYPE_CHECKING:
    from .http import StatusBoard, StatusServer

log = logging.getLogger(__name__)

# A typed config section (device/config.py): read by attribute, never copied key by key.
ConfigSection = Any


@dataclass(frozen=True)
class DaemonHooks:
    """What monitoring reads from, and hands to, the daemon that owns it."""

    stats: Callable[[], dict[str, Any]]  # the full stats payload, for /api/stats and /metrics
    state: Callable[[], State | None]  # the smoothed state now
    classifier: Callable[[], Classifier]  # the model the pipeline runs now
    upload_classifier: Callable[[], Classifier]  # a fresh classifier for POST /api/classify
    add_consumer: Callable[[Consumer], None]
    publish_alert: Callable[[dict[str, Any]], None]  # <prefix>/alert (a no-op without MQTT)


class Monitoring:
    """The daemon's status board/server, capture writer and drift monitor (each optional)."""

    def __init__(
        self, *, http: ConfigSection, capture: ConfigSection, drift: ConfigSection, hooks: DaemonHooks
    ) -> None:
        self.hooks = hooks
        self.drift_section = drift
        self.board: StatusBoard | None = None
        self.server: StatusServer | None = None
        self.capture: CaptureWriter | None = None
        self.drift: DriftMonitor | None = None
        if http.enabled:
            from .http import HttpSettings, StatusBoard, StatusServer  # only a daemon with [http] pays for it

            self.board = StatusBoard(hooks.stats, state=self._state_payload, stale_after_s=http.stale_after_s)
            self.server = StatusServer(
                self.board, HttpSettings.from_section(http), hooks.upload_classifier
            )  # checks host/token
            hooks.add_consumer(self.board)
        if capture.enabled:
            self.capture = CaptureWriter(CaptureSettings.from_section(capture), current_state=self._state_label)
            hooks.add_consumer(self.capture)
        if drift.enabled:
            hooks.add_consumer(self._drift_consumer)
        self.model_changed()

    # -- providers the consumers read --------------------------------------------------------------
    def _state_payload(self) -> dict | None:
        current = self.hooks.state()
        return current.as_payload() if current else None

    def _state_label(self) -> str | None:
        current = self.hooks.state()
        return current.label if current else None

    def _drift_consumer(self, result: FrameResult) -> None:
        if self.drift is not None:
            self.drift(result)

    # -- life -----------------------------------------------------------------------------------------
    def model_changed(self) -> None:
        """At start and after cmd/reload: show the new model, use it for uploads, new drift reference."""
        classifier = self.hooks.classifier()
        if self.board is not None:
            self.board.set_model(classifier.spec, classifier.runtime)
        if self.server is not None:
            self.server.set_classifier_factory(self.hooks.upload_classifier)
        if self.drift_section.enabled:
            self._new_drift_reference(classifier)

    def _new_drift_reference(self, classifier: Classifier) -> None:
        d = self.drift_section
        reference = Reference.from_manifest(classifier.spec.manifest)
        if reference is None:
            if self.drift is not None and self.drift.active:
                self.hooks.publish_alert(
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
            on_alert=self.hooks.publish_alert,
        )
        log.info("drift monitoring on: window %d frames, bound %.2f (Jensen-Shannon distance)", d.window, d.bound)

    def start(self) -> None:
        if self.server is not None:
            self.server.start()

    @property
    def url(self) -> str | None:
        """The status page's address once it listens (the port may have been chosen by the OS)."""
        if self.server is not None and self.server.httpd is not None:
            return self.server.url
        return None

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
        if self.url is not None:
            out["http"] = {"url": self.url}
        return out
