"""The status page in a real headless browser (Debian chromium) against the running daemon.

The page's JavaScript must have run: the current label is shown, the preview image was
refreshed with more than one frame, the token given in the URL fragment logged the page in (the
fragment never reaches the server; the page posts it to /login and polls with the session cookie).
A screenshot is taken (and kept under the test's tmp dir, or $EDGESIGHT_ARTIFACTS if set).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import cv2
import pytest
from http_helpers import serving_cat_video

TOKEN = "page-" + uuid.uuid4().hex[:8]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(url: str, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    """Headless chromium with networking extras off; ``--virtual-time-budget`` lets the page's timers run."""
    if CHROMIUM is None:
        message = "chromium is not installed: run scripts/setup.sh (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
        "--virtual-time-budget=5000",
        *mode,
        url,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    with serving_cat_video(tmp_path_factory.mktemp("page"), TOKEN, (640, 360)) as base:
        yield f"{base}/#token={TOKEN}"


def element_text(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match, f"#{element_id} not in the page"
    return match.group(1).strip()


def test_page_shows_the_label_and_a_live_preview(page_url, tmp_path):
    result = chromium(page_url, tmp_path / "profile", "--dump-dom")
    dom = result.stdout
    assert "<html" in dom, result.stderr[-2000:]
    assert element_text(dom, "state") == "Egyptian cat", dom[-3000:]
    assert element_text(dom, "health") == "classifying"
    assert "Egyptian cat" in element_text(dom, "topk") or ">Egyptian cat<" in dom
    assert "mobilenet_v2_1.0_224_quant" in element_text(dom, "model-line")
    preview = re.search(r'<img id="preview"[^>]*>', dom).group(0)
    loaded = int(re.search(r'data-loaded="(\d+)"', preview).group(1))
    distinct = int(re.search(r'data-distinct-frames="(\d+)"', preview).group(1))
    assert loaded >= 2 and distinct >= 2, preview  # the preview kept updating with new frames
    assert 'src="blob:' in preview
    fps = float(element_text(dom, "fps"))
    assert fps > 0


def test_page_screenshot(page_url, tmp_path):
    out_dir = Path(os.environ.get("EDGESIGHT_ARTIFACTS", tmp_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    shot = out_dir / "status-page.png"
    result = chromium(page_url, tmp_path / "profile", f"--screenshot={shot}")
    assert shot.exists(), result.stderr[-2000:]
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (900, 1280)
    # the preview area (left half, below the header) holds the camera frame, not an empty box
    preview = image[80:480, 40:800]
    assert preview.std() > 20, "preview area looks blank"


@pytest.fixture(scope="module")
def newcomer_url(tmp_path_factory, v2_model, imagenet_labels, images_dir):
    """An in-process server whose daemon figures say: MQTT off on purpose, drift far past its bound."""
    import threading
    import time

    from edgesight.device.classify import Classifier
    from edgesight.device.core.preprocess import read_image
    from edgesight.device.http import HttpSettings, StatusBoard, StatusServer
    from edgesight.device.results import FrameResult
    from edgesight.device.sources import Frame

    classifier = Classifier.open(v2_model, imagenet_labels, num_threads=1)
    image = read_image(images_dir / "cat.bmp")
    result = classifier.classify(image)
    extra = {
        "mqtt": {"enabled": False, "connected": False, "reconnects": 0},
        "drift": {"score": 0.912, "active": True, "samples": 300, "bound": 0.35},
    }
    board = StatusBoard(lambda: extra, stale_after_s=5)
    board.set_model(classifier.spec, classifier.runtime)
    board.model["metrics"] = {
        "per_class": {f"a_rather_long_class_name_number_{i}_with_no_spaces_at_all": 0.123456 for i in range(4)},
        "confusion_matrix_flattened_for_the_report": "x" * 240,
    }
    server = StatusServer(board, HttpSettings(enabled=True, port=0, token=TOKEN)).start()
    stop = threading.Event()

    def feed() -> None:
        number = 0
        while not stop.is_set():
            board(FrameResult(Frame(number, image, time.time(), 1.0), result, dict(result.latency_ms, total=5.0), {}))
            number += 1
            stop.wait(0.1)

    threading.Thread(target=feed, daemon=True).start()
    try:
        yield f"{server.url}/#token={TOKEN}"
    finally:
        stop.set()
        server.stop()


def test_newcomer_face_mqtt_off_drift_flagged_model_table_fits(newcomer_url, tmp_path):
    dom = chromium(newcomer_url, tmp_path / "profile", "--dump-dom").stdout
    assert element_text(dom, "health") == "classifying", dom[-3000:]
    device = re.search(r'<table id="device">.*?</table>', dom, re.S).group(0)
    assert ">MQTT off<" in device and "disconnected" not in device
    drift = re.search(r'<tr id="drift-row"[^>]*>.*?</tr>', dom, re.S).group(0)
    assert 'class="alert"' in drift and "0.912 &gt; bound 0.35" in drift and "DRIFT" in drift, drift
    shot = tmp_path / "newcomer.png"
    chromium(newcomer_url, tmp_path / "profile2", f"--screenshot={shot}")
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (900, 1280)
    # the page does not overflow 1280 px: the margin right of the panel (left of the scroll bar) is still
    # the page background, not the panel running on off the page
    margin = image[100:880, 1253:1262]
    assert (abs(margin.astype(int) - (247, 245, 244)).max(axis=2) <= 3).mean() > 0.95, "the panel runs off the page"
