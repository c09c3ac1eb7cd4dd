"""Change gating and the region of interest, on generated videos through the real pipeline and CLI.

The videos are real files (MJPG in .avi) made from the shared photos: a static stretch, a cut to
another photo, a slow brightness drift. The classifier is the real LiteRT MobileNet V1 0.25.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_one_line_error, testdata_path
from videos import write_video

from edgesight.device.classify import Classifier
from edgesight.device.config import defaults, validate
from edgesight.device.core.errors import ConfigError
from edgesight.device.gate import ChangeGate, gate_for
from edgesight.device.pipeline import Pipeline
from edgesight.device.roi import resolve_roi
from edgesight.device.sources import open_source

SIZE = (320, 180)


def photo(name: str) -> np.ndarray:
    image = cv2.imread(str(testdata_path("images", name)))
    assert image is not None
    return cv2.resize(image, SIZE, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory) -> Path:
    """30 identical frames of the cat, then 30 of the hot dog: the cut is frame 31 (frames count from 1)."""
    cat, hot_dog = photo("cat_720p.jpg"), photo("hot_dog.jpg")
    return write_video(tmp_path_factory.mktemp("gate") / "cut.avi", [cat] * 30 + [hot_dog] * 30, 30)


@pytest.fixture(scope="module")
def drift_video(tmp_path_factory) -> Path:
    """60 frames (2 s) of the cat getting 0.1 grey levels brighter per frame: 6 levels in all."""
    cat = photo("cat_720p.jpg").astype(np.float32)
    frames = [np.clip(cat + 0.1 * i, 0, 255).astype(np.uint8) for i in range(60)]
    return write_video(tmp_path_factory.mktemp("gate") / "drift.avi", frames, 30)


def run_pipeline(source_spec: Path, gate: ChangeGate | None, model: Path, labels: Path, **source_opts):
    source = open_source(str(source_spec), **source_opts)
    results = []
    pipeline = Pipeline(
        source,
        lambda: Classifier.open(model, labels, num_threads=1),
        workers=1,
        on_result=results.append,
        gate=gate,
    )
    try:
        pipeline.run()
    finally:
        source.close()
    return pipeline, results


def test_the_cut_is_classified_on_its_first_frame_and_the_static_stretches_are_gated(
    cut_video, v1_model, imagenet_labels
):
    gate = ChangeGate(threshold=3.0, max_interval_s=1000.0, settle_s=0.0)
    pipeline, results = run_pipeline(cut_video, gate, v1_model, imagenet_labels)
    assert [r.frame.number for r in results] == [1, 31]  # the first frame, then the cut itself
    reasons = {d.number: d.reason for d in gate.history}
    assert reasons[1] == "first" and reasons[31] == "change"
    assert all(reasons[n] == "gated" for n in range(2, 31)) and all(reasons[n] == "gated" for n in range(32, 61))
    assert results[0].best.label != results[1].best.label  # the classifier saw the new photo
    stats = pipeline.stats()
    assert stats["gate"]["classified"] == 2 and stats["gate"]["gated"] == 58 and stats["frames"] == 2


def test_after_a_change_frames_are_classified_for_settle_s(cut_video, v1_model, imagenet_labels):
    """The smoother must see the frames after a cut as it would without gating (window, min_dwell)."""
    gate = ChangeGate(threshold=3.0, max_interval_s=1000.0, settle_s=1000.0)
    _, results = run_pipeline(cut_video, gate, v1_model, imagenet_labels)
    numbers = [r.frame.number for r in results]
    assert numbers[0] == 1 and numbers[1:] == list(range(31, 61))


def test_a_slow_drift_is_reclassified_by_the_max_interval(drift_video, v1_model, imagenet_labels):
    gate = ChangeGate(threshold=10.0, max_interval_s=0.25, settle_s=0.0)
    _, results = run_pipeline(drift_video, gate, v1_model, imagenet_labels, realtime=True)
    reasons = [d.reason for d in gate.history]
    assert "change" not in reasons  # never above the threshold frame to frame...
    assert reasons.count("interval") >= 4, reasons  # ...but classified again every 0.25 s of the 2 s
    assert reasons.count("gated") > reasons.count("interval")
    # the change is measured against the last classified frame, so it grows between classifications
    changes = [d.change for d in gate.history if d.reason == "gated"]
    assert max(changes) > 0.5


def test_without_a_gate_every_frame_is_classified(cut_video, v1_model, imagenet_labels):
    pipeline, results = run_pipeline(cut_video, None, v1_model, imagenet_labels)
    assert len(results) == 60 and pipeline.stats()["gate"] == {"enabled": False}


def test_auto_gates_live_sources_only():
    section = defaults().gate
    assert section.enabled == "auto"
    assert gate_for(section, live=False, min_dwell=1.0) is None
    gate = gate_for(section, live=True, min_dwell=1.0)
    assert gate is not None and gate.settle_s == 1.5 and gate.threshold == 3.0
    on = validate({"gate": {"enabled": True, "settle_s": 0.2}}, "t.toml").gate
    assert gate_for(on, live=False, min_dwell=1.0).settle_s == 0.2
    assert gate_for(validate({"gate": {"enabled": False}}, "t.toml").gate, live=True, min_dwell=1.0) is None


def test_the_change_is_in_grey_levels():
    gate = ChangeGate(threshold=3.0, max_interval_s=1000.0, settle_s=0.0)
    grey = np.full((720, 1280, 3), 100, np.uint8)
    assert gate.decide(grey, 0.0).reason == "first"
    assert gate.change(grey + 2) == pytest.approx(2.0)
    assert gate.decide(grey + 2, 0.1).reason == "gated"
    tenth = grey.copy()
    tenth[:72] += 40  # a tenth of the frame 40 levels brighter: 4 levels on average
    assert gate.change(tenth) == pytest.approx(4.0, abs=0.1)
    assert gate.decide(tenth, 0.2).reason == "change"
    gate.force()
    assert gate.decide(tenth, 0.3).reason == "first"


# -- region of interest ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("roi", "fragment"),
    [
        ("[0, 0, 0.5, 1.0]", "all 4 as integers (pixels) or all 4 with a decimal point"),
        ("[0.5, 0.0, 0.6, 1.0]", "x + w <= 1"),
        ("[0, 0, 0, 10]", "w, h >= 1"),
        ("[1, 2, 3]", "expected [x, y, w, h]"),
        ('"left half"', "expected [x, y, w, h]"),
    ],
)
def test_a_bad_roi_is_one_line_naming_the_key(cli, tmp_path, roi, fragment, v1_model, imagenet_labels, images_dir):
    cfg = tmp_path / "edgesight.toml"
    cfg.write_text(f"[source]\nroi = {roi}\n")
    result = cli("run", "--config", cfg, "--model", v1_model, "--labels", imagenet_labels, "--no-mqtt", "--check")
    assert_one_line_error(result, "[source] roi:", fragment, code=2)


def test_a_bad_gate_key_is_one_line(cli, tmp_path):
    cfg = tmp_path / "edgesight.toml"
    cfg.write_text('[gate]\nenabled = "sometimes"\n')
    result = cli("run", "--config", cfg, "--check")
    assert_one_line_error(result, "[gate] enabled:", 'true, false or "auto"', code=2)


def test_roi_resolves_fractions_and_pixels_against_the_frame():
    assert resolve_roi((0.25, 0.0, 0.5, 1.0), 1280, 720) == (320, 0, 640, 720)
    assert resolve_roi((10, 20, 100, 50), 1280, 720) == (10, 20, 100, 50)
    with pytest.raises(ConfigError, match=r"\[source\] roi: \[1000, 0, 400, 10\] lies outside the 1280x720 frame"):
        resolve_roi((1000, 0, 400, 10), 1280, 720)


def test_the_roi_is_cropped_before_the_fit_and_gates_on_the_region(cut_video, v1_model, imagenet_labels, tmp_path):
    """A change outside the region is not a change; the classifier gets the region's pixels."""
    source = open_source(str(cut_video))
    seen = []
    pipeline = Pipeline(
        source,
        lambda: Classifier.open(v1_model, imagenet_labels, num_threads=1),
        workers=1,
        on_result=seen.append,
        roi=(0, 0, 100, 60),
    )
    pipeline.run()
    source.close()
    assert seen and all(r.frame.image.shape[:2] == (60, 100) for r in seen)


def test_a_pixel_roi_outside_the_frame_stops_the_run_with_exit_2(cli, tmp_path, cut_video, v1_model, imagenet_labels):
    cfg = tmp_path / "edgesight.toml"
    cfg.write_text(f'[source]\nspec = "{cut_video}"\nroi = [0, 0, 640, 100]\n[mqtt]\nenabled = false\n')
    result = cli("-q", "run", "--config", cfg, "--model", v1_model, "--labels", imagenet_labels)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert "[source] roi: [0, 0, 640, 100] lies outside the 320x180 frame" in result.stderr, result.stderr


def test_the_daemon_gates_and_reports_it(cli, tmp_path, cut_video, v1_model, imagenet_labels):
    cfg = tmp_path / "edgesight.toml"
    cfg.write_text(
        f'[source]\nspec = "{cut_video}"\n[gate]\nenabled = true\nmax_interval_s = 1000.0\nsettle_s = 0.0\n'
        "[mqtt]\nenabled = false\n"
    )
    result = cli("run", "--config", cfg, "--model", v1_model, "--labels", imagenet_labels)
    assert result.returncode == 0, result.stderr
    assert "2 frame(s) classified" in result.stderr and "58 gated" in result.stderr, result.stderr
