"""Helpers for the status page / HTTP / capture / drift tests: a tiny HTTP client, MJPEG parsing,
and the daemon started with a config the test writes."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from conftest import free_port, testdata_path
from daemon_helpers import DaemonProcess, write_config
from videos import cat_video


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        import json

        return json.loads(self.body)


def request(
    url: str,
    *,
    token: str | None = None,
    data: bytes | None = None,
    headers: dict | None = None,
    method: str | None = None,
    timeout: float = 20.0,
) -> Reply:
    """One HTTP request; 4xx/5xx come back as a Reply, not an exception."""
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=all_headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


def wait_healthy(base: str, daemon: DaemonProcess | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon is not None and daemon.proc.poll() is not None:
            raise AssertionError(f"daemon exited early:\n{daemon.log()[-3000:]}")
        try:
            if request(base + "/healthz", timeout=2).status == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"/healthz never said 200:\n{daemon.log()[-3000:] if daemon else ''}")


def mjpeg_frames(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/x-mixed-replace body into (part headers, JPEG bytes) by its boundary."""
    assert content_type.startswith("multipart/x-mixed-replace"), content_type
    boundary = content_type.split("boundary=", 1)[1].strip().strip('"').encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        chunk = chunk.lstrip(b"\r\n")
        if not chunk or chunk.startswith(b"--"):
            continue
        head, _, rest = chunk.partition(b"\r\n\r\n")
        headers = dict(line.decode().split(": ", 1) for line in head.split(b"\r\n") if b": " in line)
        length = int(headers["Content-Length"])
        parts.append((headers, rest[:length]))
    return parts


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable JPEG"
    return image


def start_daemon(
    tmp: Path,
    model: Path,
    labels: Path | None,
    source: Path,
    extra: str,
    *,
    name: str = "daemon",
    args: tuple[str, ...] = (),
    model_extra: str = "",
) -> DaemonProcess:
    """``edgesight run`` as a subprocess with [model] (plus ``model_extra``) and [source] set, ``extra`` appended."""
    labels_line = f'labels = "{labels}"' if labels else ""
    config = write_config(
        tmp / f"{name}.toml",
        f"""
[model]
path = "{model}"
{labels_line}
workers = 1
{model_extra}
[source]
spec = "{source}"
{extra}
""",
    )
    return DaemonProcess(["--config", config, *args], tmp / f"{name}.log")


@contextmanager
def serving_cat_video(tmp: Path, token: str, size: tuple[int, int], http_extra: str = ""):
    """The shared V2 daemon on a looping cat video with [http] on (token required), MQTT off.

    Yields the base URL once ``/healthz`` says the daemon is classifying; stops it after.
    """
    video = cat_video(tmp / "cat.avi", testdata_path("images", "cat_720p.jpg"), count=30, size=size)
    port = free_port()
    daemon = start_daemon(
        tmp,
        testdata_path("models", "mobilenet_v2_1.0_224_quant.tflite"),
        testdata_path("models", "imagenet_labels.txt"),
        video,
        f"""
loop = true
realtime = true
[mqtt]
enabled = false
[http]
enabled = true
port = {port}
token = "{token}"
{http_extra}
""",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, daemon)
        yield base
    finally:
        daemon.terminate(timeout=5)
        daemon.close()
