"""Monitoring stands on its own: typed config sections and callables in, no Daemon object, no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from edgesight.device.classify import Classifier
from edgesight.device.config import validate
from edgesight.device.monitoring import DaemonHooks, Monitoring

DEVICE = Path(__file__).resolve().parents[1] / "device"


def test_monitoring_is_built_from_sections_and_hooks(tmp_path, v2_model, imagenet_labels):
    config = validate(
        {"capture": {"enabled": True, "dir": str(tmp_path / "c"), "min_free_mb": 0}, "drift": {"enabled": True}}, "t"
    )
    classifier = Classifier.open(v2_model, imagenet_labels)
    consumers: list = []
    alerts: list = []
    monitoring = Monitoring(
        http=config.http,
        capture=config.capture,
        drift=config.drift,
        hooks=DaemonHooks(
            stats=dict,
            state=lambda: None,
            classifier=lambda: classifier,
            upload_classifier=lambda: classifier,
            add_consumer=consumers.append,
            publish_alert=alerts.append,
        ),
    )
    try:
        assert monitoring.capture is not None and monitoring.capture in consumers
        assert monitoring.capture.settings.dir == tmp_path / "c"
        assert monitoring.drift is None  # a bare model has no test_distribution: drift off, no error
        assert set(monitoring.stats()) == {"capture"} and monitoring.url is None
    finally:
        monitoring.close()


def test_monitoring_does_not_import_the_daemon():
    tree = ast.parse((DEVICE / "monitoring.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "daemon" not in imported and not any(m and m.endswith(".daemon") for m in imported), imported
