"""Frame sources: OpenCV video files, image folders, reopen with backoff, and picamera2 via a fake module."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import testdata_path
from videos import cat_video, write_video

from edgesight.device.core.errors import SourceError, UsageError
from edgesight.device.sources import Backoff, jetson_csi_pipeline, open_source
from edgesight.device.sources.opencv import OpenCVSource


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return cat_video(
        tmp_path_factory.mktemp("v") / "cat.avi",
        testdata_path("images", "cat_720p.jpg"),
        count=12,
        size=(320, 180),
        fps=30,
    )


def read_all(source, limit: int = 1000) -> list:
    frames = []
    while len(frames) < limit:
        frame = source.read()
        if frame is None:
            break
        frames.append(frame)
    return frames


def test_video_file_serves_every_frame_then_ends(video):
    source = open_source(str(video))
    frames = read_all(source)
    source.close()
    assert [f.number for f in frames] == list(range(1, 13))
    assert frames[0].image.shape == (180, 320, 3) and frames[0].order == "BGR"
    assert not source.live and source.dropped == 0
    assert all(f.capture_ms >= 0 and f.timestamp > 0 for f in frames)


def test_loop_restarts_and_numbers_keep_rising(video):
    source = open_source(str(video), loop=True)
    frames = read_all(source, limit=30)
    source.close()
    assert [f.number for f in frames] == list(range(1, 31))


def test_realtime_file_is_live_and_drops_what_it_falls_behind_on(video):
    source = open_source(str(video), realtime=True, loop=True)
    assert source.live
    source.read()
    time.sleep(0.3)  # a slow consumer: about 9 frames at 30 fps go by
    frame = source.read()
    source.close()
    assert source.dropped >= 3 and frame.number == 2  # numbers count frames served, drops are counted apart


def test_image_folder_skips_unreadable_files(tmp_path, images_dir):
    for name in ("cat.bmp", "hot_dog.jpg"):
        shutil.copy(images_dir / name, tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes((images_dir / "hot_dog.jpg").read_bytes()[:2000])  # truncated JPEG
    frames = read_all(open_source(str(tmp_path)))
    assert len(frames) == 2 and frames[0].image.ndim == 3


def test_missing_file_and_camera_fail_at_open_with_one_line(tmp_path):
    with pytest.raises(SourceError, match="no such video file or image folder"):
        open_source(str(tmp_path / "gone.mp4"))
    with pytest.raises(SourceError, match="cannot open"):
        open_source("57")  # no /dev/video57 here
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(not_video))


def test_spec_forms_dispatch_to_the_right_backend(monkeypatch):
    opened = []

    class Recorder:
        def __init__(self, target, kind, **opts):
            opened.append((kind, target))
            self.name, self.live, self.dropped = str(target), kind != "file", 0

    monkeypatch.setattr("edgesight.device.sources.opencv.OpenCVSource", Recorder)
    for spec in ("0", "rtsp://cam.local/stream", "videotestsrc ! videoconvert ! appsink", "jetson-csi:1"):
        open_source(spec, reopen=False)
    assert [k for k, _ in opened] == ["usb", "url", "gstreamer", "gstreamer"]
    assert opened[0][1] == 0
    assert "nvarguscamerasrc sensor-id=1" in opened[3][1]


def test_jetson_pipeline_string_is_the_usual_one():
    text = jetson_csi_pipeline(0, 1920, 1080, 30, flip=2)
    assert text.startswith("nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM)")
    assert "width=(int)1920, height=(int)1080" in text and "framerate=(fraction)30/1" in text
    assert "nvvidconv flip-method=2" in text and text.endswith("appsink drop=1 max-buffers=1")


def test_vanished_file_is_reopened_with_backoff_and_the_gap_reported(tmp_path, video):
    clip = Path(shutil.copy(video, tmp_path / "clip.avi"))
    moved = tmp_path / "moved.avi"
    source = open_source(str(clip), loop=True, backoff=Backoff(0.05, 0.2))
    read_all(source, limit=5)
    clip.rename(moved)  # mid-run the file goes away (and, being an open fd, plays to its end first)
    restore = threading.Timer(0.8, lambda: moved.rename(clip))
    restore.start()
    frames = read_all(source, limit=20)
    restore.join()
    source.close()
    assert [f.number for f in frames] == list(range(6, 26))
    assert source.reopens == 1 and source.gap_s >= 0.3 and source.failing_since is None


def test_close_interrupts_a_backoff_wait(tmp_path, video):
    clip = Path(shutil.copy(video, tmp_path / "clip.avi"))
    source = open_source(str(clip), loop=True, backoff=Backoff(30.0, 30.0))
    clip.unlink()
    threading.Timer(0.3, source.interrupt).start()
    t0 = time.monotonic()
    frames = read_all(source)
    assert len(frames) == 12 and time.monotonic() - t0 < 10  # would be 30 s without the interrupt
    source.close()


# -- picamera2: the real API surface, faked because no Pi camera exists here (tests/fakes/picamera2) ------

FAKES = Path(__file__).parent / "fakes"


@pytest.fixture
def fake_picamera2(monkeypatch):
    """tests/fakes/picamera2 imported as ``picamera2``, with a fast frame rate."""
    spec = importlib.util.spec_from_file_location("picamera2", FAKES / "picamera2" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "picamera2", module)
    monkeypatch.setenv("FAKE_PICAMERA2_FPS", "200")
    monkeypatch.delenv("FAKE_PICAMERA2_IMAGE", raising=False)
    return module


def test_picamera2_main_stream_is_bgr(fake_picamera2):
    source = open_source("picamera2", width=640, height=480)
    frame = source.read()
    source.close()
    camera = fake_picamera2.instances[0]
    assert camera.config["main"] == {"size": (640, 480), "format": "RGB888"} and camera.config["lores"] is None
    assert camera.calls == ["create_video_configuration", "configure", "start", "capture_array:main", "stop", "close"]
    assert source.live and frame.order == "BGR" and frame.image.shape == (480, 640, 3)
    rgb = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)
    assert rgb[0, 0].tolist() == [0, 0, 255]  # blue stays blue through the preprocessing's BGR->RGB


def test_picamera2_lores_stream_is_converted_from_yuv420(fake_picamera2):
    source = open_source("picamera2:1", stream="lores", lores_width=320, lores_height=240)
    frame = source.read()
    source.close()
    camera = fake_picamera2.instances[0]
    assert camera.camera_num == 1 and camera.config["lores"] == {"size": (320, 240), "format": "YUV420"}
    assert "capture_array:lores" in camera.calls and frame.image.shape == (240, 320, 3)
    b, g, r = frame.image[120, 160].tolist()
    assert b > 200 and g < 60 and r < 60  # the blue scene survives the YUV420 round trip


def test_picamera2_failure_reopens_the_camera(fake_picamera2, monkeypatch):
    monkeypatch.setenv("FAKE_PICAMERA2_FAIL_AFTER", "2")
    source = open_source("picamera2", backoff=Backoff(0.01, 0.01))
    numbers = [source.read().number for _ in range(4)]
    source.close()
    assert numbers == [1, 2, 3, 4] and source.reopens == 1
    first = fake_picamera2.instances[0]
    assert first.calls[-2:] == ["stop", "close"] and len(fake_picamera2.instances) >= 2


def test_picamera2_missing_camera_and_missing_module(fake_picamera2, monkeypatch):
    with pytest.raises(SourceError, match="picamera2:5: no such camera"):
        open_source("picamera2:5")
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(UsageError, match="python3-picamera2"):  # set-up problem: no point retrying
        open_source("picamera2", wait_for_device=True)


def test_daemon_waits_for_a_camera_that_is_not_up_yet(fake_picamera2, monkeypatch):
    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", "0")  # libcamera lists no camera yet
    source = open_source("picamera2", wait_for_device=True, backoff=Backoff(0.05, 0.1))
    assert source.failing_since is not None and source.live and source.name == "picamera2"
    threading.Timer(0.3, lambda: monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", "1")).start()
    frame = source.read()
    source.close()
    assert frame.number == 1 and source.reopens == 1 and source.gap_s >= 0.2


def test_a_missing_file_is_not_waited_for(tmp_path):
    with pytest.raises(SourceError, match="no such video file"):
        open_source(str(tmp_path / "gone.mp4"), wait_for_device=True)


def test_written_video_round_trips(tmp_path):
    frames = [np.full((64, 96, 3), i * 20, np.uint8) for i in range(5)]
    path = write_video(tmp_path / "grey.avi", frames, fps=10)
    source = OpenCVSource(str(path), kind="file")
    assert source.fps == pytest.approx(10)
    got = read_all(source)
    assert len(got) == 5 and abs(int(got[4].image.mean()) - 80) <= 3


def test_source_modules_import_the_base_types_not_the_package():
    """No cycle: the implementations import ``sources.base``, never the package that imports them."""
    import ast

    import edgesight.device.sources as package

    folder = Path(package.__file__).parent
    for module in ("base", "opencv", "picamera2", "images"):
        tree = ast.parse((folder / f"{module}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert node.module is not None, f"{module}.py imports from the sources package itself"


def test_every_opened_source_has_the_whole_protocol(tmp_path):
    """The pipeline relies on interrupt, failing_since, reopens and gap_s: reopen or not."""
    from edgesight.device.sources import DirectSource, ReopeningSource

    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((8, 8, 3), np.uint8))
    for source in (open_source(str(folder)), open_source(str(folder), reopen=False)):
        assert isinstance(source, (ReopeningSource, DirectSource))
        assert (source.reopens, source.gap_s, source.failing_since) == (0, 0.0, None)
        assert source.read() is not None
        source.interrupt()
        assert source.read() is None
        source.close()


def test_unreachable_stream_is_one_line_without_ffmpegs_own(tmp_path):
    """A refused RTSP connection: our line naming the stream, not FFmpeg's ``[tcp @ 0x...]`` first."""
    import os
    import socket
    import subprocess

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = (
        "from edgesight.device.sources import open_source\n"
        "from edgesight.device.core.errors import SourceError\n"
        "import sys\n"
        "try:\n"
        f"    open_source('rtsp://127.0.0.1:{port}/cam', reopen=False)\n"
        "except SourceError as exc:\n"
        "    print(f'edgesight: error: {exc}', file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENCV_FFMPEG_LOGLEVEL", "EDGESIGHT_NATIVE_LOGS")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert "[tcp @" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"edgesight: error: rtsp://127.0.0.1:{port}/cam: cannot open (is the stream reachable?)"
    ]
