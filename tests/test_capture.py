"""Capture for retraining: what is kept and why, the rate limit, the quota (only the daemon's own
captures rotate), and the loop: daemon captures -> a person sorts them -> data import -> train."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import cv2
import pytest
from conftest import run_cli, testdata_path
from http_helpers import start_daemon
from videos import pan_frames, write_video

from edgesight.device.capture import MARKER, NAME_RE, CaptureSettings, CaptureWriter, own_captures
from edgesight.device.classify import Classifier
from edgesight.device.core.preprocess import read_image
from edgesight.device.results import FrameResult
from edgesight.device.sources import Frame


class Clock:
    """A monotonic clock the test moves by hand (the rate limit is about seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def results(v2_model, imagenet_labels, images_dir):
    """Real classifications of real photos by the shared v2 model, as FrameResults."""
    classifier = Classifier.open(v2_model, imagenet_labels)
    made = {}
    for number, name in enumerate(("cat.bmp", "face.jpg", "hot_dog.jpg", "cat_720p.jpg")):
        image = read_image(images_dir / name)
        result = classifier.classify(image)
        made[name] = FrameResult(
            Frame(number, image, time.time(), 2.0),
            result,
            dict(result.latency_ms, total=20.0),
            {"name": "mnv2", "version": "7"},
        )
    return made


def writer(tmp_path: Path, clock: Clock | None = None, **overrides) -> CaptureWriter:
    settings = CaptureSettings(
        tmp_path / "capture", **{"low_score": 0.5, "min_interval_s": 0.0, "min_free_mb": 0, **overrides}
    )
    return CaptureWriter(settings, clock=clock or Clock())


def at(result: FrameResult, seconds_later: float) -> FrameResult:
    """The same classification on a frame taken ``seconds_later``."""
    frame = result.frame
    return FrameResult(
        Frame(frame.number, frame.image, frame.timestamp + seconds_later, frame.capture_ms),
        result.classification,
        result.latency_ms,
        result.model,
    )


def test_low_score_frame_is_saved_with_its_sidecar(tmp_path, results):
    capture = writer(tmp_path, on_state_change=False)
    assert results["face.jpg"].best.score < 0.5  # the shared data's "below threshold" case
    assert capture(results["cat.bmp"]) is None  # confident: not worth labelling
    assert capture(results["face.jpg"]) == "low_score"
    capture.close()
    saved = own_captures(tmp_path / "capture")
    assert len(saved) == 1
    image, sidecar = saved[0].image, saved[0].sidecar
    assert image.parent.name == time.strftime("%Y%m%d", time.gmtime(results["face.jpg"].frame.timestamp))
    match = NAME_RE.match(image.name)
    assert match and match.group(3) == f"{results['face.jpg'].best.score:.3f}"
    decoded = cv2.imread(str(image))
    assert decoded.shape == results["face.jpg"].frame.image.shape
    meta = json.loads(sidecar.read_text())
    assert meta[MARKER] == 1 and meta["reason"] == "low_score" and meta["image"] == image.name
    assert meta["top"][0]["label"] == results["face.jpg"].best.label and len(meta["top"]) == 3
    assert meta["model"] == {"name": "mnv2", "version": "7"} and meta["frame"] == 1
    assert {"infer", "total"} <= set(meta["latency_ms"])


def test_state_change_frame_is_saved(tmp_path, results):
    states = iter(["Egyptian cat", "Egyptian cat", "hotdog"])
    capture = CaptureWriter(
        CaptureSettings(tmp_path / "c", min_interval_s=0, min_free_mb=0),
        clock=Clock(),
        current_state=lambda: next(states),
    )
    assert capture(results["cat.bmp"]) is None  # first state: nothing to compare with
    assert capture(results["cat_720p.jpg"]) is None  # same state
    assert capture(results["hot_dog.jpg"]) == "state_change"
    capture.close()
    [saved] = own_captures(tmp_path / "c")
    meta = json.loads(saved.sidecar.read_text())
    assert meta["reason"] == "state_change" and meta["state"] == "hotdog"


def test_rate_limit(tmp_path, results):
    clock = Clock()
    capture = writer(tmp_path, clock, min_interval_s=5.0)
    assert capture(results["face.jpg"]) == "low_score"
    clock.now += 4.9
    assert capture(results["face.jpg"]) is None
    clock.now += 0.2
    assert capture(results["face.jpg"]) == "low_score"
    capture.close()
    assert capture.stats()["saved"] == 2


def test_state_change_is_not_hidden_by_a_burst_of_low_scores(tmp_path, results):
    states = iter(["unknown", "unknown", "hotdog"])
    clock = Clock()
    capture = CaptureWriter(
        CaptureSettings(tmp_path / "c", min_interval_s=60, min_free_mb=0),
        clock=clock,
        current_state=lambda: next(states),
    )
    assert capture(results["face.jpg"]) == "low_score"
    clock.now += 1
    assert capture(results["face.jpg"]) is None  # rate-limited
    assert capture(results["hot_dog.jpg"]) == "state_change"  # its own limiter
    capture.close()
    assert capture.stats()["saved"] == 2


def test_quota_rotates_only_the_daemons_own_captures(tmp_path, results):
    root = tmp_path / "capture"
    day = root / "20200101"
    day.mkdir(parents=True)
    # a person's files in the capture folder, including one that merely looks like a capture
    foreign = {
        root / "notes.txt": b"my notes",
        day / "holiday.jpg": (testdata_path("images", "cat.bmp")).read_bytes(),
        day / "20200101T000000.000Z_lookalike_0.100.jpg": b"not ours: no sidecar with the marker",
        root / "SORTED" / "cat" / "keep.jpg": b"sorted by hand",
    }
    for path, data in foreign.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    first = writer(tmp_path, max_mb=0.25)
    for i in range(3):
        first(at(results["face.jpg"], i))
        first.flush()
    first.close()
    earliest = {c.image.name for c in own_captures(root)}
    # a restart: the second writer counts what the first left and rotates the oldest first
    second = writer(tmp_path, max_mb=0.25)
    for i in range(12):
        second(at(results["face.jpg"], 10 + i))
        second.flush()
    second.close()
    kept = own_captures(root)
    used = sum(c.bytes for c in kept)
    assert used <= 0.25e6, used
    assert second.stats()["rotated"] > 0 and len(kept) >= 2
    assert not earliest & {c.image.name for c in kept}, "the oldest captures should have gone first"
    for path, data in foreign.items():
        assert path.read_bytes() == data, f"{path} was touched"


def test_low_disk_skips_instead_of_filling_it(tmp_path, results):
    capture = writer(tmp_path, min_free_mb=1e9)  # more free space than any disk has
    capture(results["face.jpg"])
    capture.close()
    assert capture.stats()["skipped_low_disk"] == 1 and own_captures(tmp_path / "capture") == []


def test_unwritable_capture_dir_is_a_config_error(tmp_path):
    from edgesight.device.core.errors import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"\[capture\] dir"):
        CaptureWriter(CaptureSettings(blocker / "capture"))


@pytest.mark.slow
def test_daemon_captures_sort_import_train_export(tmp_path, v2_model, imagenet_labels):
    """The retraining loop: daemon -> capture folder (under quota) -> sorted by a person -> import -> train
    -> export: a bundle the device loads, with the test distribution the drift monitor compares against."""
    cat = pan_frames(cv2.imread(str(testdata_path("images", "cat_720p.jpg"))), 40, (320, 180))
    face = pan_frames(cv2.imread(str(testdata_path("images", "face.jpg"))), 40, (320, 180))
    video = write_video(
        tmp_path / "scene.avi",
        cat[:10] + face[:10] + cat[10:20] + face[10:20] + cat[20:30] + face[20:30] + cat[30:] + face[30:],
        fps=15,
    )
    capture_dir = tmp_path / "capture"
    capture_dir.mkdir()
    (capture_dir / "README.txt").write_text("a person's note: must survive the quota")
    daemon = start_daemon(
        tmp_path,
        v2_model,
        imagenet_labels,
        video,
        # realtime at 15 fps: the writer (queue of 4) keeps up, so how many frames are saved does not
        # depend on how busy the machine is (in benchmark mode a loaded CI machine dropped half)
        f"""
realtime = true
[mqtt]
enabled = false
[capture]
enabled = true
dir = "{capture_dir}"
low_score = 0.99
min_interval_s = 0.0
min_free_mb = 0.0
max_mb = 0.8
""",
    )
    try:
        assert daemon.wait(90) == 0, daemon.log()[-3000:]
    finally:
        daemon.close()
    captures = own_captures(capture_dir)
    assert sum(c.bytes for c in captures) <= 0.8e6
    assert len(captures) >= 20, daemon.log()[-2000:]
    assert (capture_dir / "README.txt").exists()
    summary = re.search(r"captures: (\d+) saved, (\d+) rotated out", daemon.log())
    assert summary and int(summary.group(2)) > 0, f"the quota should have rotated old captures: {summary}"
    assert int(summary.group(1)) - int(summary.group(2)) == len(captures)

    # the person: looks at each capture (here: its sidecar's label) and files it by class
    sorted_dir = tmp_path / "SORTED"
    for item in captures:
        label = json.loads(item.sidecar.read_text())["top"][0]["label"]
        target = sorted_dir / ("cat" if "cat" in label else "other")
        target.mkdir(parents=True, exist_ok=True)
        item.image.rename(target / item.image.name)
        item.sidecar.rename(target / item.sidecar.name)  # sidecars may travel along: the importer skips them
    counts = {d.name: len(list(d.glob("*.jpg"))) for d in sorted_dir.iterdir()}
    assert counts.get("cat", 0) >= 5 and counts.get("other", 0) >= 5, counts

    dataset = tmp_path / "dataset"
    result = run_cli("data", "import", sorted_dir, dataset, "--near-distance", "0", timeout=300)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((dataset / "dataset.json").read_text())
    assert manifest["rejects"] == [], "a sidecar or capture was rejected"
    assert sorted(manifest["labels"]) == ["cat", "other"]
    assert all(list(d.glob("*.json")) for d in sorted_dir.iterdir()), "sidecars must stay where the person put them"

    run = tmp_path / "run"
    result = run_cli(
        "train",
        dataset,
        "--out",
        run,
        "--arch",
        "mobilenet_v2",
        "--alpha",
        "0.35",
        "--size",
        "96",
        "--weights",
        "none",
        "--epochs-head",
        "1",
        "--epochs-finetune",
        "0",
        "--batch-size",
        "16",
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    info = json.loads((run / "run.json").read_text())
    assert info["labels"] == ["cat", "other"]
    assert (run / "model.keras").is_file()

    # -> a bundle the device loads, whose recorded test distribution the drift monitor reads
    bundle = tmp_path / "bundle"
    result = run_cli("export", run, "--out", bundle, "--quant", "int8", timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    from edgesight.device.core.bundle import load_bundle
    from edgesight.device.drift import Reference

    spec = load_bundle(bundle)
    assert spec.labels == ("cat", "other")
    reference = Reference.from_manifest(spec.manifest)
    assert reference is not None and sum(reference.score_histogram) > 0
    assert set(reference.class_frequencies) == {"cat", "other"}
