"""The status page in a real headless browser (Debian chromium) against the running daemon.

The page's JavaScript must have run: the current label is shown, the preview image was
refreshed with more than one frame, the token given in the URL was passed on to every request.
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
        yield f"{base}/?token={TOKEN}"


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
