"""Drift: the score's properties, the alert's hysteresis, and the daemon raising a retained
``<prefix>/alert`` on a video of something the model does not know (a face) but not on the
known-class video (the cat) whose distribution the bundle's manifest records."""

from __future__ import annotations

import json
import random

import cv2
import numpy as np
import pytest
from conftest import testdata_path
from daemon_helpers import Subscriber, retained
from http_helpers import start_daemon
from videos import pan_frames, write_video

from edgesight.device.classify import Classifier
from edgesight.device.core.bundle import write_bundle
from edgesight.device.core.preprocess import InputContract
from edgesight.device.drift import DriftMonitor, Reference, js_distance, score_bin

PREFIX = "edgesight/drifty"


# -- the score ------------------------------------------------------------------------------------
def test_js_distance_is_bounded_symmetric_and_zero_for_identical():
    p, q = np.array([5, 3, 2, 0]), np.array([0, 0, 1, 9])
    assert js_distance(p, p * 7) == pytest.approx(0.0, abs=1e-9)  # scale does not matter
    assert js_distance(p, q) == pytest.approx(js_distance(q, p))
    assert 0 < js_distance(p, q) < 1
    assert js_distance(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)  # disjoint supports
    assert js_distance(np.zeros(3), p[:3]) == 0.0  # nothing seen yet: no drift claimed


def test_score_bins_cover_zero_to_one():
    assert [score_bin(s) for s in (0.0, 0.05, 0.1, 0.55, 0.99, 1.0)] == [0, 0, 1, 5, 9, 9]


def test_reference_from_manifest_and_refusals(caplog):
    good = {
        "test_distribution": {
            "score_histogram": [0, 0, 0, 0, 0, 1, 2, 3, 4, 10],
            "class_frequencies": {"cat": 15, "dog": 5},
        }
    }
    ref = Reference.from_manifest(good)
    assert ref.score_histogram[-1] == 10.0 and ref.class_frequencies == {"cat": 15.0, "dog": 5.0}
    trainer_format = {
        "test_distribution": {  # what trainer/measure.py score_distribution writes
            "images": 6,
            "top1_score_histogram": {
                "edges": [round(i / 10, 2) for i in range(11)],
                "counts": [0, 0, 0, 0, 1, 1, 0, 0, 2, 2],
            },
            "predicted_class_frequency": {"circle": 0.5, "square": 0.3333, "triangle": 0.1667},
        }
    }
    ref = Reference.from_manifest(trainer_format)
    assert ref.score_histogram == (0, 0, 0, 0, 1, 1, 0, 0, 2, 2) and ref.class_frequencies["circle"] == 0.5
    odd_edges = {
        "test_distribution": {
            "top1_score_histogram": {"edges": [0, 0.5, 1], "counts": [1, 2]},
            "predicted_class_frequency": {},
        }
    }
    assert Reference.from_manifest(odd_edges) is None
    assert Reference.from_manifest({}) is None  # a bundle without it: monitoring off, no error
    assert Reference.from_manifest({"test_distribution": {"score_histogram": [1, 2], "class_frequencies": {}}}) is None
    assert "drift monitoring is off" in caplog.text


def test_alert_raised_above_bound_and_cleared_only_below_clear_below():
    rng = random.Random(4)
    known = [("cat", rng.uniform(0.8, 1.0)) for _ in range(400)]
    alerts: list[dict] = []
    monitor = DriftMonitor(
        Reference.from_results(known), window=100, bound=0.35, min_samples=50, check_every=5, on_alert=alerts.append
    )
    for label, score in known[:150]:
        monitor.add(label, score)
    assert not monitor.active and monitor.report().score < 0.2 and alerts == []
    for _ in range(100):  # a class never seen, at low confidence
        monitor.add("stranger", rng.uniform(0.1, 0.4))
    assert monitor.active and len(alerts) == 1
    alert = alerts[0]
    assert alert["active"] is True and alert["kind"] == "drift" and alert["score"] > 0.35 and alert["v"] == 1
    # back to the known scene: the alert clears once, not on every evaluation
    for label, score in known[150:400]:
        monitor.add(label, score)
    assert not monitor.active and [a["active"] for a in alerts] == [True, False]
    assert alerts[1]["score"] < monitor.clear_below


def test_no_alert_before_min_samples():
    monitor = DriftMonitor(Reference.from_results([("cat", 0.95)] * 50), window=100, min_samples=60, check_every=1)
    for _ in range(59):
        monitor.add("stranger", 0.2)
    assert not monitor.active and monitor.report().score == pytest.approx(1.0)
    monitor.add("stranger", 0.2)
    assert monitor.active


# -- the daemon -----------------------------------------------------------------------------------
V2_CONTRACT = InputContract(224, 224, "uint8", 0.0078125, 128, mean=128.0, std=128.0, fit="centre")


@pytest.fixture(scope="module")
def drift_setup(tmp_path_factory):
    """A bundle around the shared v2 model whose test_distribution is the cat video's, and videos."""
    tmp = tmp_path_factory.mktemp("drift")
    model = testdata_path("models", "mobilenet_v2_1.0_224_quant.tflite")
    labels = testdata_path("models", "imagenet_labels.txt").read_text().splitlines()
    cat = pan_frames(cv2.imread(str(testdata_path("images", "cat_720p.jpg"))), 60, (320, 180))
    face = pan_frames(cv2.imread(str(testdata_path("images", "face.jpg"))), 60, (320, 180))
    classifier = Classifier.open(model, testdata_path("models", "imagenet_labels.txt"))
    top1 = [classifier.classify(frame).best for frame in cat]
    reference = Reference.from_results([(p.label, p.score) for p in top1])
    bundle = write_bundle(
        tmp / "bundle",
        {"model.tflite": model},
        labels,
        name="cat-watch",
        version="1",
        architecture={"name": "mobilenet_v2", "alpha": 1.0, "input_size": 224},
        contract=V2_CONTRACT,
        background_index=0,
        extra={"test_distribution": reference.as_manifest()},
    )
    return {
        "tmp": tmp,
        "bundle": bundle,
        "cat": write_video(tmp / "cat.avi", cat),
        "face": write_video(tmp / "face.avi", face),
        "face_then_cat": write_video(tmp / "face_then_cat.avi", face + cat + cat),
    }


def run_daemon(setup, broker, video, name):
    """Run the daemon over ``video`` to its end; return (alert messages seen live, final stats)."""
    subscriber = Subscriber(broker.port, f"{PREFIX}/#")
    daemon = start_daemon(
        setup["tmp"],
        setup["bundle"],
        None,
        video,
        f"""
[mqtt]
host = "127.0.0.1"
port = {broker.port}
device_id = "drifty"
stats_interval = 0.5
discovery = false
[drift]
window = 40
min_samples = 30
check_every = 5
bound = 0.35
""",
        name=name,
    )
    try:
        assert daemon.wait(90) == 0, daemon.log()[-3000:]
        subscriber.wait_topic("/availability", lambda m: m.text == "offline", timeout=10)
        alerts = [m.json() for m in subscriber.on("/alert")]
        stats = subscriber.wait_topic("/stats").json()
    finally:
        subscriber.close()
        daemon.close()
    return alerts, stats


def test_known_class_video_raises_no_alert(drift_setup, broker):
    alerts, stats = run_daemon(drift_setup, broker, drift_setup["cat"], "cat")
    print("known-class drift", stats["drift"])
    assert alerts == []
    assert retained(broker.port, f"{PREFIX}/alert", timeout=1.0) is None
    assert stats["drift"]["score"] < 0.35 and stats["drift"]["active"] is False
    assert stats["drift"]["samples"] == 40


def test_unknown_class_video_raises_the_retained_alert(drift_setup, broker):
    alerts, stats = run_daemon(drift_setup, broker, drift_setup["face"], "face")
    print("unknown-class drift", stats["drift"])
    assert [a["active"] for a in alerts] == [True]
    assert stats["drift"]["score"] > 0.35 and stats["drift"]["active"] is True
    message = retained(broker.port, f"{PREFIX}/alert")
    assert message is not None and message.retain and message.qos == 1
    alert = message.json()
    assert alert["active"] is True and alert["kind"] == "drift" and alert["bound"] == 0.35
    assert alert["score"] > 0.35 and "test split" in alert["message"]


def test_alert_clears_when_the_known_scene_returns(drift_setup, broker):
    alerts, stats = run_daemon(drift_setup, broker, drift_setup["face_then_cat"], "face_then_cat")
    assert [a["active"] for a in alerts] == [True, False]
    assert stats["drift"]["active"] is False
    assert json.loads(retained(broker.port, f"{PREFIX}/alert").payload)["active"] is False
