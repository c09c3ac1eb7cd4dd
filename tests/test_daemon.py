"""`edgesight run` end to end: a real mosquitto, a real paho subscriber, real OpenCV-written videos.

The daemon runs as a subprocess exactly as systemd would start it, on the shared MobileNet V2.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error, testdata_path
from daemon_helpers import DaemonProcess, Subscriber, retained, write_config
from videos import cat_video

RESULT_FIELDS = {"v", "timestamp", "frame", "top", "latency_ms", "model"}
STAGES = {"capture", "queue", "preprocess", "infer", "postprocess", "publish", "total"}


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A 1 s, 640x360 pan across cat_720p.jpg, encoded by cv2.VideoWriter."""
    out = tmp_path_factory.mktemp("video") / "cat.avi"
    return cat_video(out, testdata_path("images", "cat_720p.jpg"), count=30, size=(640, 360), fps=30)


def model_args(v2_model, imagenet_labels) -> list[str]:
    return ["--model", v2_model, "--labels", imagenet_labels]


def config(tmp_path: Path, port: int, extra: str = "", source: str = "") -> Path:
    return write_config(
        tmp_path / "edgesight.toml",
        f"""
[source]
{source}
[mqtt]
port = {port}
device_id = "t1"
stats_interval = 0.5
reconnect_min = 1
reconnect_max = 2
keepalive = 5
{extra}
[state]
window = 3
min_dwell = 0.0
""",
    )


def test_live_run_publishes_the_contract_and_stops_on_sigterm(tmp_path, broker, video, v2_model, imagenet_labels):
    sub = Subscriber(broker.port)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.1)
    cfg = config(tmp_path, broker.port, source=f'spec = "{video}"\nloop = true\nrealtime = true')
    daemon = DaemonProcess(
        ["--config", cfg, *model_args(v2_model, imagenet_labels)],
        tmp_path / "daemon.log",
        env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"},
    )
    try:
        state = sub.wait_topic("edgesight/t1/state")
        payload = state.json()
        assert payload["v"] == 1 and payload["label"] == "Egyptian cat", payload
        assert payload["score"] >= 0.6 and payload["since"] > 0

        result = sub.wait_topic("edgesight/t1/result").json()
        assert RESULT_FIELDS <= set(result), result
        assert result["top"][0] == {"index": 286, "label": "Egyptian cat", "score": result["top"][0]["score"]}
        assert result["top"][0]["score"] >= 0.6 and len(result["top"]) == 3
        assert STAGES <= set(result["latency_ms"]), result["latency_ms"]
        assert result["model"] == {"name": "mobilenet_v2_1.0_224_quant", "version": ""}

        stats = sub.wait_topic("edgesight/t1/stats", lambda m: m.json()["frames"] > 0).json()
        for key in ("fps", "latency_ms", "dropped", "queue", "uptime_s", "mqtt", "runtime", "model", "memory_rss_mb"):
            assert key in stats, key
        assert stats["runtime"]["name"] in ("ai_edge_litert", "tflite_runtime", "tensorflow.lite")
        assert "cpu_temp_c" in stats

        online = [m for m in sub.on("edgesight/t1/availability")]
        assert online and online[0].text == "online"

        discovery = sub.wait_for(
            lambda ms: [m for m in ms if m.topic.startswith("homeassistant/") and m.topic.endswith("/config")],
            what="discovery",
        )
        by_key = {m.topic.split("/")[-2]: m.json() for m in discovery if m.payload}  # empty: removed
        assert {"state", "fps", "latency"} <= set(by_key)
        for entity in by_key.values():
            for required in ("name", "unique_id", "state_topic", "availability_topic", "device", "value_template"):
                assert required in entity, (required, entity)
            assert entity["availability_topic"] == "edgesight/t1/availability"
            assert entity["device"]["identifiers"] == ["edgesight_t1"]
        assert by_key["state"]["json_attributes_topic"] == "edgesight/t1/state"
        assert by_key["fps"]["state_topic"] == "edgesight/t1/stats" and by_key["fps"]["unit_of_measurement"] == "fps"
        assert len({e["unique_id"] for e in by_key.values()}) == len(by_key)

        frames = [m.json()["frame"] for m in sub.on("edgesight/t1/result")]
        assert frames == sorted(frames) and len(set(frames)) == len(frames)

        assert daemon.terminate(timeout=2.0) == 0
    finally:
        daemon.close()
        sub.close()
    assert "Traceback" not in daemon.log()
    offline = retained(broker.port, "edgesight/t1/availability")
    assert offline is not None and offline.text == "offline" and offline.retain
    state = retained(broker.port, "edgesight/t1/state")
    assert state is not None and state.json()["label"] == "Egyptian cat"

    notes = []
    while True:
        try:
            notes.append(notify.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            break
    notify.close()
    joined = "\n".join(notes)
    assert "READY=1" in joined and "WATCHDOG=1" in joined and "STOPPING=1" in joined and "STATUS=" in joined


def test_video_file_ends_cleanly_with_every_frame_classified(tmp_path, broker, video, v2_model, imagenet_labels):
    sub = Subscriber(broker.port)
    cfg = config(tmp_path, broker.port, source=f'spec = "{video}"')
    daemon = DaemonProcess(["--config", cfg, *model_args(v2_model, imagenet_labels)], tmp_path / "d.log")
    try:
        assert daemon.wait(60) == 0, daemon.log()
    finally:
        daemon.close()
    time.sleep(0.3)
    frames = [m.json()["frame"] for m in sub.on("edgesight/t1/result")]
    sub.close()
    # benchmark mode: a file source is not live, so not one frame may be dropped
    assert frames == list(range(1, 31)) or (frames and frames[-1] == 30 and frames == sorted(frames)), frames
    offline = retained(broker.port, "edgesight/t1/availability")
    assert offline is not None and offline.text == "offline"


def test_broker_restart_mid_run_keeps_classifying_and_republishes(tmp_path, broker, video, v2_model, imagenet_labels):
    cfg = config(tmp_path, broker.port, source=f'spec = "{video}"\nloop = true\nrealtime = true')
    daemon = DaemonProcess(["--config", cfg, *model_args(v2_model, imagenet_labels)], tmp_path / "d.log")
    sub = Subscriber(broker.port)
    try:
        before = sub.wait_topic("edgesight/t1/result").json()["frame"]
        sub.wait_topic("edgesight/t1/state")
        sub.close()
        broker.stop()  # the broker goes away: retained messages are lost with it
        time.sleep(2.0)
        assert daemon.proc.poll() is None, daemon.log()
        broker.start()
        # a new subscriber on the fresh broker: availability and state must come back, retained
        availability = retained(broker.port, "edgesight/t1/availability", timeout=20)
        assert availability is not None and availability.text == "online", daemon.log()[-2000:]
        state = retained(broker.port, "edgesight/t1/state", timeout=5)
        assert state is not None and state.json()["label"] == "Egyptian cat"
        sub = Subscriber(broker.port)
        after = sub.wait_topic("edgesight/t1/result").json()["frame"]
        # the frame counter kept rising during the outage (about 60 frames at 30 fps)
        assert after > before + 30, (before, after)
        stats = sub.wait_topic("edgesight/t1/stats", lambda m: m.json()["mqtt"]["reconnects"] >= 1).json()
        assert stats["mqtt"]["connected"] is True
        assert daemon.terminate() == 0
    finally:
        daemon.close()
        sub.close()


def test_broker_down_at_start(tmp_path, broker, video, v2_model, imagenet_labels):
    broker.stop()
    cfg = config(tmp_path, broker.port, source=f'spec = "{video}"\nloop = true\nrealtime = true')
    daemon = DaemonProcess(["--config", cfg, *model_args(v2_model, imagenet_labels)], tmp_path / "d.log")
    try:
        time.sleep(2.0)
        assert daemon.proc.poll() is None, daemon.log()
        assert f":{broker.port} unreachable; classifying anyway" in daemon.log(), daemon.log()
        broker.start()
        availability = retained(broker.port, "edgesight/t1/availability", timeout=20)
        assert availability is not None and availability.text == "online", daemon.log()[-2000:]
        sub = Subscriber(broker.port)
        stats = sub.wait_topic("edgesight/t1/stats", lambda m: m.json()["frames"] > 40).json()
        sub.close()
        assert stats["state"] == "Egyptian cat"
        assert daemon.terminate() == 0
    finally:
        daemon.close()


def test_video_file_that_disappears_is_reopened(tmp_path, broker, video, v2_model, imagenet_labels):
    clip = shutil.copy(video, tmp_path / "clip.avi")
    cfg = config(
        tmp_path,
        broker.port,
        source=f'spec = "{clip}"\nloop = true\nrealtime = true\nreopen_initial = 0.2\nreopen_max = 0.5',
    )
    sub = Subscriber(broker.port)
    daemon = DaemonProcess(["--config", cfg, *model_args(v2_model, imagenet_labels)], tmp_path / "d.log")
    moved = tmp_path / "elsewhere.avi"
    try:
        sub.wait_topic("edgesight/t1/result")
        Path(clip).rename(moved)  # the file goes away (moved, never deleted)
        down = sub.wait_topic("edgesight/t1/stats", lambda m: m.json()["source"]["down"], timeout=20).json()
        moved.rename(clip)
        back = sub.wait_topic(
            "edgesight/t1/stats",
            lambda m: m.json()["source"]["reopens"] >= 1 and m.json()["frames"] > down["frames"],
            timeout=20,
        ).json()
        assert back["source"]["down"] is False and back["source"]["gap_s"] > 0
        assert daemon.proc.poll() is None
        assert daemon.terminate() == 0
    finally:
        daemon.close()
        sub.close()
    log = daemon.log()
    assert "video file is gone" in log and "is back after" in log


def test_cmd_reload_refuses_a_bad_bundle_and_swaps_a_good_one(
    tmp_path, broker, video, v2_model, v1_model, imagenet_labels
):
    from edgesight.device.core.bundle import read_labels, write_bundle
    from edgesight.device.core.preprocess import InputContract

    def bundle(name: str) -> Path:
        return write_bundle(
            tmp_path / "models" / name,
            {"model.tflite": v1_model},
            read_labels(imagenet_labels),
            name="tiny-v1",
            version="2.0.0",
            architecture={"name": "mobilenet_v1", "alpha": 0.25},
            contract=InputContract(128, 128, "uint8", 0.0078125, 128, mean=128.0, std=128.0),
            background_index=0,
        )

    good, bad = bundle("good"), bundle("bad")
    with (bad / "model.tflite").open("r+b") as handle:  # a half-copied model: the hash must catch it
        handle.seek(1000)
        handle.write(b"\0" * 64)
    snapshots = tmp_path / "snaps"
    cfg = config(
        tmp_path,
        broker.port,
        extra='commands = ["reload", "snapshot"]',
        source=f'spec = "{video}"\nloop = true\nrealtime = true',
    )
    cfg.write_text(
        cfg.read_text() + f'\n[snapshot]\ndir = "{snapshots}"\n[model]\nmodels_dir = "{tmp_path / "models"}"\n'
    )
    sub = Subscriber(broker.port)
    daemon = DaemonProcess(["--config", cfg, *model_args(v2_model, imagenet_labels)], tmp_path / "d.log")
    try:
        sub.wait_topic("edgesight/t1/result")
        sub.client.publish("edgesight/t1/cmd/reload", bad.name, qos=1)  # a bundle folder name under models_dir
        reply = sub.wait_topic("edgesight/t1/reply").json()
        assert reply["command"] == "reload" and reply["ok"] is False
        assert reply["error"] == "refused: not a bundle under models_dir"  # the why is in the local log only
        assert "sha256 does not match" in daemon.log()
        seen = len(sub.on("edgesight/t1/result"))
        old = sub.wait_for(lambda ms: [m for m in ms if m.topic.endswith("/result")][seen + 5 :], what="more results")
        assert all(m.json()["model"]["name"] == "mobilenet_v2_1.0_224_quant" for m in old)

        sub.client.publish("edgesight/t1/cmd/reload", f'{{"bundle": "{good.name}"}}', qos=1)
        ok = sub.wait_topic("edgesight/t1/reply", lambda m: m.json()["ok"]).json()
        assert ok["model"]["name"] == "tiny-v1"
        new = sub.wait_topic("edgesight/t1/result", lambda m: m.json()["model"]["name"] == "tiny-v1").json()
        assert new["model"]["version"] == "2.0.0" and new["top"][0]["label"] == "Egyptian cat"

        sub.client.publish("edgesight/t1/cmd/snapshot", "", qos=1)
        snap = sub.wait_topic("edgesight/t1/reply", lambda m: m.json()["command"] == "snapshot").json()
        assert snap["ok"] is True
        assert Path(snap["image"]).stat().st_size > 1000 and Path(snap["result"]).exists()
        assert daemon.terminate() == 0
    finally:
        daemon.close()
        sub.close()
    assert "Traceback" not in daemon.log()


def run_to_the_end(broker, args: list, log_path: Path, env: dict | None = None) -> tuple[Subscriber, DaemonProcess]:
    """Run the daemon until --max-frames with a subscriber listening; exit 0 is asserted."""
    sub = Subscriber(broker.port)
    daemon = DaemonProcess(args, log_path, env=env)
    try:
        assert daemon.wait(60) == 0, daemon.log()
    finally:
        daemon.close()
    time.sleep(0.3)  # let the last QoS 0 messages arrive
    sub.close()
    return sub, daemon


def test_low_confidence_frames_give_unknown_and_result_every_n(tmp_path, broker, images_dir, v2_model, imagenet_labels):
    """face.jpg has no stable ImageNet class: the state must say unknown, not a guess."""
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copy(images_dir / "face.jpg", folder / "face.jpg")
    cfg = config(tmp_path, broker.port, extra="result_every = 2", source=f'spec = "{folder}"\nloop = true')
    cfg.write_text(cfg.read_text().replace("window = 3", "window = 3\nthreshold = 0.6"))
    sub, _ = run_to_the_end(
        broker, ["--config", cfg, *model_args(v2_model, imagenet_labels), "--max-frames", "6"], tmp_path / "d.log"
    )
    assert [m.json()["frame"] for m in sub.on("edgesight/t1/result")] == [2, 4, 6]
    state = retained(broker.port, "edgesight/t1/state")
    assert state is not None and state.json()["label"] == "none" and state.json()["score"] < 0.6


def test_bad_device_id_is_a_config_error(cli, tmp_path, v2_model, imagenet_labels, images_dir):
    result = cli("run", *model_args(v2_model, imagenet_labels), "--source", images_dir, "--device-id", "cam/#")
    assert_one_line_error(result, "[mqtt] device_id", "cam/#", code=2)


def test_pi_camera_source_end_to_end(tmp_path, broker, v2_model, imagenet_labels):
    """`--source picamera2` through the whole daemon, with tests/fakes/picamera2 as the camera."""
    path = tmp_path / "pythonpath"
    path.mkdir()
    (path / "picamera2").symlink_to(Path(__file__).parent / "fakes" / "picamera2")  # only this fake
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH")])),
        "FAKE_PICAMERA2_IMAGE": str(testdata_path("images", "cat_720p.jpg")),
        "FAKE_PICAMERA2_FPS": "30",
    }
    cfg = config(tmp_path, broker.port, source='spec = "picamera2"\nwidth = 1280\nheight = 720')
    sub, daemon = run_to_the_end(
        broker,
        ["--config", cfg, *model_args(v2_model, imagenet_labels), "--max-frames", "30"],
        tmp_path / "d.log",
        env=env,
    )
    states = [m.json() for m in sub.on("edgesight/t1/state")]
    assert states and states[0]["label"] == "Egyptian cat", daemon.log()[-2000:]
    stats = [m.json() for m in sub.on("edgesight/t1/stats")][-1]
    assert stats["source"]["name"] == "picamera2:0" and stats["source"]["live"] is True
    assert stats["frames"] == 30


def test_run_without_v_says_what_it_does_and_sums_up(cli, tmp_path, broker, video, v2_model, imagenet_labels):
    """A newcomer at a terminal: one line at start (model, runtime, source, MQTT, status page), one at exit."""
    cfg = config(tmp_path, broker.port, extra="", source=f'spec = "{video}"')
    cfg.write_text(cfg.read_text() + "\n[http]\nenabled = true\nport = 0\n")
    result = cli("run", "--config", cfg, *model_args(v2_model, imagenet_labels), "--max-frames", "10")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and result.stdout == "", result
    start, end = lines
    assert start.startswith("edgesight run: mobilenet_v2_1.0_224_quant on ") and f"source {video}" in start
    assert f"MQTT localhost:{broker.port} as edgesight/t1" in start and "status page http://127.0.0.1:" in start
    assert end.startswith("edgesight run: 10 frame(s) classified in ") and " fps), 1 state change(s)" in end
    assert end.endswith("stopped: max frames"), end


def test_run_without_mqtt_says_so(cli, images_dir, v2_model, imagenet_labels):
    result = cli(
        "run", *model_args(v2_model, imagenet_labels), "--source", images_dir, "--no-mqtt", "--max-frames", "3"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].endswith("MQTT off") and "3 frame(s) classified" in lines[1], lines
    quiet = cli("-q", "run", *model_args(v2_model, imagenet_labels), "--source", images_dir, "--no-mqtt")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
