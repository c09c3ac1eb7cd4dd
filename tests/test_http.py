"""The daemon's HTTP API over real HTTP: one running `edgesight run` on a looping cat video.

Status codes, JSON fields, the token refused and accepted, Prometheus text that a real parser
reads, snapshot and MJPEG frames that decode as JPEG, uploads classified or refused with a reason.
"""

from __future__ import annotations

import socket
import time
import uuid

import pytest
from conftest import assert_one_line_error, free_port, testdata_path
from daemon_helpers import write_config
from http_helpers import decode_jpeg, mjpeg_frames, request, serving_cat_video, start_daemon, wait_healthy
from prometheus_client.parser import text_string_to_metric_families
from videos import cat_video

TOKEN = "test-token-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running daemon with [http] on (token required), MQTT off; yields its base URL."""
    with serving_cat_video(
        tmp_path_factory.mktemp("http"), TOKEN, (480, 270), "max_upload_mb = 0.5\nmjpeg_fps = 10.0"
    ) as base:
        yield base


def test_healthz_needs_no_token_and_says_ok_while_classifying(server):
    reply = request(server + "/healthz")
    assert reply.status == 200
    assert reply.body.strip() == b"ok"


@pytest.mark.parametrize("path", ["/api/stats", "/api/latest", "/metrics", "/snapshot.jpg", "/stream.mjpg"])
def test_every_other_endpoint_refuses_a_missing_or_wrong_token(server, path):
    for token in (None, "wrong-" + TOKEN):
        reply = request(server + path, token=token)
        assert reply.status == 401, (path, token)
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert "token" in reply.json()["error"]


def test_page_shell_is_served_without_token_but_holds_no_data(server):
    page = request(server + "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert b"app.js" in page.body and b"Egyptian" not in page.body
    script = request(server + "/app.js")
    assert script.status == 200 and "javascript" in script.headers["content-type"]
    assert request(server + "/style.css").status == 200


def test_token_accepted_as_header_never_as_query(server):
    assert request(server + "/api/stats", token=TOKEN).status == 200
    refused = request(server + f"/api/stats?token={TOKEN}")
    assert refused.status == 400 and "not accepted in the URL" in refused.json()["error"]


def test_stats_json_fields(server):
    stats = request(server + "/api/stats", token=TOKEN).json()
    assert stats["v"] == 1 and stats["healthy"] is True
    assert stats["frames"] > 0 and stats["fps"] > 0
    assert stats["model"]["name"] == "mobilenet_v2_1.0_224_quant" and stats["model"]["labels"] == 1001
    assert stats["runtime"]["name"] in ("ai_edge_litert", "tflite_runtime", "tensorflow.lite", "onnxruntime")
    assert stats["uptime_s"] > 0
    assert {"infer", "preprocess", "total"} <= set(stats["latency_ms"])
    assert stats["mqtt"] == {"enabled": False, "connected": False, "reconnects": 0}
    assert stats["history"] and {"t", "fps", "latency_ms"} <= set(stats["history"][-1])


def test_latest_is_the_cat_with_the_result_contract(server):
    latest = request(server + "/api/latest", token=TOKEN).json()
    assert latest["v"] == 1
    assert latest["top"][0]["label"] == "Egyptian cat" and latest["top"][0]["score"] > 0.5
    assert len(latest["top"]) == 3
    assert isinstance(latest["frame"], int) and latest["timestamp"] > 0
    assert {"capture", "preprocess", "infer", "total"} <= set(latest["latency_ms"])
    assert latest["model"]["name"] == "mobilenet_v2_1.0_224_quant"
    assert latest["state"]["label"] == "Egyptian cat"


def test_metrics_parse_as_prometheus_text(server):
    reply = request(server + "/metrics", token=TOKEN)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(reply.body.decode())}
    assert families["edgesight_frames"].samples[0].value > 0
    stages = {s.labels["stage"] for s in families["edgesight_stage_latency_seconds"].samples}
    assert {"capture", "preprocess", "infer", "total"} <= stages
    buckets = [
        s
        for s in families["edgesight_stage_latency_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["stage"] == "infer"
    ]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value > 0
    assert "edgesight_dropped_frames" in families and "edgesight_mqtt_reconnects" in families
    info = families["edgesight_model_info"].samples[0].labels
    assert info["name"] == "mobilenet_v2_1.0_224_quant" and info["runtime"]
    assert families["edgesight_up"].samples[0].value == 1.0


def test_snapshot_is_a_jpeg_of_the_frame(server):
    reply = request(server + "/snapshot.jpg", token=TOKEN)
    assert reply.status == 200 and reply.headers["content-type"] == "image/jpeg"
    image = decode_jpeg(reply.body)
    assert image.shape[:2] == (270, 480)
    assert int(reply.headers["x-frame-number"]) >= 0


def test_mjpeg_boundary_frames_are_jpegs_of_new_frames(server):
    reply = request(server + "/stream.mjpg?frames=3", token=TOKEN, timeout=30)
    assert reply.status == 200
    parts = mjpeg_frames(reply.body, reply.headers["content-type"])
    assert len(parts) == 3
    numbers = [int(headers["X-Frame-Number"]) for headers, _ in parts]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3, numbers
    for headers, jpeg in parts:
        assert headers["Content-Type"] == "image/jpeg"
        assert decode_jpeg(jpeg).shape[:2] == (270, 480)


def test_upload_raw_jpeg_is_classified(server):
    body = testdata_path("images", "hot_dog.jpg").read_bytes()
    reply = request(server + "/api/classify?top_k=5", token=TOKEN, data=body, headers={"Content-Type": "image/jpeg"})
    assert reply.status == 200, reply.body
    result = reply.json()
    assert result["top"][0]["label"].startswith("hotdog") and result["top"][0]["score"] > 0.9
    assert len(result["top"]) == 5
    assert result["model"]["name"] == "mobilenet_v2_1.0_224_quant"


def test_upload_multipart_form_is_classified(server):
    boundary = "----edgesight" + uuid.uuid4().hex
    image = testdata_path("images", "cat.bmp").read_bytes()
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="cat.bmp"\r\n'
            f"Content-Type: image/bmp\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    reply = request(
        server + "/api/classify",
        token=TOKEN,
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert reply.status == 200, reply.body
    result = reply.json()
    assert result["name"] == "cat.bmp" and result["top"][0]["label"] == "Egyptian cat"


def test_upload_refusals_say_why(server):
    url = server + "/api/classify"
    big = testdata_path("images", "cat_720p.jpg").read_bytes() * 8  # > the 0.5 MB limit set above
    assert len(big) > 0.5 * (1 << 20)
    reply = request(url, token=TOKEN, data=big, headers={"Content-Type": "image/jpeg"})
    assert reply.status == 413 and "limit" in reply.json()["error"]

    reply = request(url, token=TOKEN, data=b"just some words", headers={"Content-Type": "text/plain"})
    assert reply.status == 415 and "text/plain" in reply.json()["error"]

    reply = request(url, token=TOKEN, data=b"GIF89a not really", headers={"Content-Type": "image/gif"})
    assert reply.status == 400 and "not a readable image" in reply.json()["error"]

    jpeg = testdata_path("images", "hot_dog.jpg").read_bytes()
    reply = request(url, token=TOKEN, data=jpeg[: len(jpeg) // 2], headers={"Content-Type": "image/jpeg"})
    assert reply.status == 400 and "truncated JPEG" in reply.json()["error"]

    reply = request(url, token=TOKEN, data=b"x", headers={"Content-Type": "multipart/form-data; boundary=zz"})
    assert reply.status == 400 and "multipart" in reply.json()["error"]

    reply = request(url, data=jpeg, headers={"Content-Type": "image/jpeg"})  # no token
    assert reply.status == 401


def test_unknown_paths_are_404(server):
    assert request(server + "/nope", token=TOKEN).status == 404
    assert request(server + "/api/nope", token=TOKEN).status == 404


def v1_http_config(path, http_lines: str):
    """A config on the tiny shared model and the photo folder, MQTT off, [http] as given."""
    return write_config(
        path,
        f"""
[model]
path = "{testdata_path("models", "mobilenet_v1_0.25_128_quant.tflite")}"
labels = "{testdata_path("models", "imagenet_labels.txt")}"
[source]
spec = "{testdata_path("images")}"
[mqtt]
enabled = false
[http]
enabled = true
{http_lines}
""",
    )


def test_non_loopback_bind_without_token_is_refused(tmp_path, cli):
    result = cli("run", "--config", v1_http_config(tmp_path / "open.toml", 'host = "0.0.0.0"'))
    assert_one_line_error(result, "[http] host", "token", code=2)


def test_port_in_use_is_one_line_error(tmp_path, cli):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = v1_http_config(tmp_path / "busy.toml", f"port = {busy.getsockname()[1]}")
        result = cli("run", "--config", config)
    assert_one_line_error(result, "[http] cannot listen", code=1)


def test_healthz_is_503_before_frames_and_after_they_stop(v2_model, imagenet_labels, images_dir):
    """The board over real HTTP with a real classifier's results: healthy only while frames arrive."""
    from edgesight.device.classify import Classifier
    from edgesight.device.core.preprocess import read_image
    from edgesight.device.http import HttpSettings, StatusBoard, StatusServer
    from edgesight.device.results import FrameResult
    from edgesight.device.sources import Frame

    classifier = Classifier.open(v2_model, imagenet_labels)
    board = StatusBoard(stale_after_s=0.5)
    board.set_model(classifier.spec, classifier.runtime)
    server = StatusServer(board, HttpSettings(enabled=True, port=0)).start()
    try:
        assert request(server.url + "/healthz").status == 503
        assert request(server.url + "/api/latest").status == 503
        assert request(server.url + "/snapshot.jpg").status == 503
        image = read_image(images_dir / "cat.bmp")
        result = classifier.classify(image)
        board(
            FrameResult(
                Frame(1, image, time.time(), 1.0),
                result,
                dict(result.latency_ms, total=9.0),
                {"name": classifier.name, "version": ""},
            )
        )
        assert request(server.url + "/healthz").status == 200
        assert request(server.url + "/api/latest").json()["top"][0]["label"] == "Egyptian cat"
        assert request(server.url + "/api/classify", data=b"x", headers={"Content-Type": "image/png"}).status == 503
        time.sleep(0.7)
        assert request(server.url + "/healthz").status == 503
    finally:
        server.stop()


def test_reload_switches_the_page_and_uploads_to_the_new_model(tmp_path, broker):
    """cmd/reload: /api/stats names the new model and POST /api/classify runs it."""
    from daemon_helpers import Subscriber

    from edgesight.device.core.bundle import read_labels, write_bundle
    from edgesight.device.core.preprocess import InputContract

    write_bundle(  # cmd/reload loads only bundles under [model] models_dir
        tmp_path / "models" / "v1",
        {"model.tflite": testdata_path("models", "mobilenet_v1_0.25_128_quant.tflite")},
        read_labels(testdata_path("models", "imagenet_labels.txt")),
        name="mobilenet_v1_0.25_128_quant",
        version="1",
        architecture={"name": "mobilenet_v1", "alpha": 0.25},
        contract=InputContract(128, 128, "uint8", 0.0078125, 128, mean=128.0, std=128.0),
        background_index=0,
    )
    video = cat_video(tmp_path / "cat.avi", testdata_path("images", "cat_720p.jpg"), count=20, size=(320, 180))
    port = free_port()
    daemon = start_daemon(
        tmp_path,
        testdata_path("models", "mobilenet_v2_1.0_224_quant.tflite"),
        testdata_path("models", "imagenet_labels.txt"),
        video,
        f"""
loop = true
realtime = true
[mqtt]
host = "127.0.0.1"
port = {broker.port}
device_id = "reloady"
discovery = false
commands = ["reload"]
[http]
enabled = true
port = {port}
""",
        model_extra=f'models_dir = "{tmp_path / "models"}"',
    )
    base = f"http://127.0.0.1:{port}"
    subscriber = Subscriber(broker.port, "edgesight/reloady/#")
    try:
        wait_healthy(base, daemon)
        upload = testdata_path("images", "cat.bmp").read_bytes()
        before = request(base + "/api/classify", data=upload, headers={"Content-Type": "image/bmp"}).json()
        assert before["model"]["name"] == "mobilenet_v2_1.0_224_quant"
        subscriber.client.publish("edgesight/reloady/cmd/reload", '{"bundle": "v1"}', qos=1)
        reply = subscriber.wait_topic("/reply", timeout=30).json()
        assert reply["ok"] is True, reply
        deadline = time.monotonic() + 10
        while request(base + "/api/stats").json()["model"]["name"] != "mobilenet_v1_0.25_128_quant":
            assert time.monotonic() < deadline, "the page still shows the old model"
            time.sleep(0.1)
        after = request(base + "/api/classify", data=upload, headers={"Content-Type": "image/bmp"}).json()
        assert after["model"]["name"] == "mobilenet_v1_0.25_128_quant"
        assert after["top"][0]["label"] == "Egyptian cat"
        assert after["top"][0]["score"] < before["top"][0]["score"]  # the tiny model is less sure (0.55 vs 0.88)
    finally:
        subscriber.close()
        daemon.terminate(timeout=5)
        daemon.close()


def test_metrics_carry_drift_and_capture_figures_when_the_daemon_has_them():
    from prometheus_client import generate_latest

    from edgesight.device.http import StatusBoard

    board = StatusBoard(
        lambda: {
            "drift": {"score": 0.42, "active": True},
            "capture": {"saved": 7},
            "dropped": 3,
            "mqtt": {"reconnects": 2},
        }
    )
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(board.registry).decode())}
    assert families["edgesight_drift_score"].samples[0].value == 0.42
    assert families["edgesight_drift_alert"].samples[0].value == 1.0
    assert families["edgesight_captures"].samples[0].value == 7
    assert families["edgesight_dropped_frames"].samples[0].value == 3
    assert families["edgesight_mqtt_reconnects"].samples[0].value == 2
    assert families["edgesight_up"].samples[0].value == 0.0  # no frame yet
