"""``edgesight doctor`` and the Jetson install path, against real parts and the suite's fakes.

The broker is the real mosquitto fixture (and one with a password file); the Edge TPU is the
fake ``libedgetpu.so.1`` compiled from tests/fakes; TensorRT, cuda-python and picamera2 are the
fakes on PYTHONPATH; ``vcgencmd`` and ``systemctl`` are scripts on PATH that answer like the real
ones. Each case asserts the row's status and the exit code: 1 only when the config needs what
is missing, 0 with warnings alone, 2 for a config that does not load.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
from accel_models import FAKES, build_fake_libedgetpu
from conftest import MOSQUITTO, ROOT, assert_one_line_error, free_port

from edgesight.device.core.tomlfile import read_toml
from edgesight.device.doctor import decode_throttled, parse_video_backends


def have_gstreamer() -> bool:
    import cv2

    return parse_video_backends(cv2.getBuildInformation())["GStreamer"]


needs_no_gstreamer = pytest.mark.skipif(have_gstreamer(), reason="this OpenCV has GStreamer")


def write_config(path: Path, *, runtime: str = "auto", source: str, mqtt: str = "enabled = false") -> Path:
    path.write_text(f'[model]\nruntime = "{runtime}"\n\n[source]\nspec = "{source}"\n\n[mqtt]\n{mqtt}\n')
    return path


def fake_bin(folder: Path, name: str, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def path_env(folder: Path) -> dict:
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def pythonpath(*extra: Path) -> dict:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [*map(str, extra), os.environ.get("PYTHONPATH", "")]))}


def doctor(cli, *args, env: dict | None = None):
    """Run ``edgesight doctor --json``; return (result, rows by check name)."""
    result = cli("doctor", "--json", *args, env=env, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    assert report["exit"] == result.returncode
    return result, {row["check"]: row for row in report["checks"]}


# --------------------------------------------------------------------------- the [jetson] extra


def test_jetson_extra_is_the_device_list_without_opencv_plus_its_own():
    extras = read_toml(ROOT / "pyproject.toml")["project"]["optional-dependencies"]

    def names(reqs: list[str]) -> dict[str, str]:
        return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower(): r for r in reqs}

    device, jetson = names(extras["device"]), names(extras["jetson"])
    assert "edgesight" not in jetson, "[jetson] must not pull [device]: that brings pip's OpenCV back"
    assert not any(name.startswith("opencv") for name in jetson)
    own = {name: req for name, req in jetson.items() if name not in device}
    assert set(own) == {"numpy", "cuda-python", "onnxruntime"}
    assert "<2" in own["numpy"]  # JetPack's cv2 is built against NumPy 1
    # every other device requirement, with the same version bounds
    assert {name: req for name, req in jetson.items() if name in device} == {
        name: req for name, req in device.items() if not name.startswith("opencv")
    }


def test_install_scripts_parse_and_the_jetson_path_checks_gstreamer():
    for script in ("install-pi.sh", "install-jetson.sh"):
        subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], check=True)
    jetson = (ROOT / "scripts" / "install-jetson.sh").read_text()
    pi = (ROOT / "scripts" / "install-pi.sh").read_text()
    assert "EXTRA=jetson scripts/install-pi.sh" in jetson
    assert "--system-site-packages" in pi and '"$SRC[$EXTRA]"' in pi
    assert "GStreamer:[[:space:]]*YES" in pi and "pip uninstall" in pi


def test_a_wrong_extra_is_refused_before_anything_is_installed(tmp_path):
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-pi.sh")],
        env={**os.environ, "EXTRA": "gpu", "DESTDIR": str(tmp_path / "stage")},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "EXTRA=gpu" in result.stderr
    assert not (tmp_path / "stage").exists()


# --------------------------------------------------------------------------- GStreamer / run --check


def test_video_backends_are_read_from_the_build_information():
    text = """
  Video I/O:
    DC1394:                      NO
    FFMPEG:                      YES
      avcodec:                   YES (58.134.100)
    GStreamer:                   YES (1.20.3)
    v4l/v4l2:                    YES (linux/videodev2.h)
"""
    assert parse_video_backends(text) == {"FFmpeg": True, "GStreamer": True, "V4L2": True}
    assert parse_video_backends(text.replace("YES (1.20.3)", "NO")) == {
        "FFmpeg": True,
        "GStreamer": False,
        "V4L2": True,
    }


@needs_no_gstreamer
@pytest.mark.parametrize("spec", ["nvarguscamerasrc ! nvvidconv ! video/x-raw,format=BGRx ! appsink", "jetson-csi:0"])
def test_run_check_with_a_gstreamer_source_names_pip_opencv_and_the_jetson_install(cli, spec):
    result = cli("run", "--check", "--source", spec, "--no-mqtt")
    assert_one_line_error(result, "has no GStreamer", "cv2", "scripts/install-jetson.sh", code=2)
    assert "opencv-python-headless" in result.stderr  # pip's wheel, named as the cause


@needs_no_gstreamer
def test_doctor_fails_a_gstreamer_config_on_an_opencv_without_it(cli, tmp_path):
    config = write_config(tmp_path / "c.toml", source="v4l2src ! videoconvert ! appsink", runtime="litert")
    result, rows = doctor(cli, "--config", config)
    assert result.returncode == 1
    assert rows["video back-ends"]["status"] == "fail" and "GStreamer NO" in rows["video back-ends"]["detail"]
    assert "install-jetson.sh" in rows["video back-ends"]["fix"]
    assert "opencv-python-headless" in rows["opencv"]["detail"]  # pip's wheel, with its path


# --------------------------------------------------------------------------- the table and exit codes


def test_without_a_config_missing_hardware_only_warns(cli):
    result = cli("doctor", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["check", "status", "detail"]
    names = {line.split()[0] for line in rows if not line.startswith(" ")}
    assert {"runtime", "picamera2", "opencv", "cameras", "edge", "tensorrt", "cpu", "broker", "service"} <= names
    assert "runtime          ok" in result.stdout or re.search(r"^runtime\s+ok\s", result.stdout, re.MULTILINE)


def test_a_bad_config_is_one_line_and_exit_2(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[mqtt]\nport = "abc"\n')
    assert_one_line_error(cli("doctor", "--config", bad), "[mqtt] port", code=2)
    assert_one_line_error(cli("doctor", "--config", tmp_path / "nope.toml"), "nope.toml", code=2)


def test_picamera2_source_without_picamera2_fails_naming_it(cli, tmp_path, images_dir):
    config = write_config(tmp_path / "c.toml", source="picamera2", runtime="litert")
    result, rows = doctor(cli, "--config", config)
    assert result.returncode == 1 and rows["picamera2"]["status"] == "fail"
    assert "python3-picamera2" in rows["picamera2"]["fix"]
    assert "picamera2" in result.stderr  # the one summary line names what is missing
    # the fake picamera2 on the path: the same config passes that row
    result, rows = doctor(cli, "--config", config, env=pythonpath(FAKES))
    assert rows["picamera2"]["status"] == "ok", rows["picamera2"]


def test_usb_source_without_the_device_fails(cli, tmp_path):
    config = write_config(tmp_path / "c.toml", source="57", runtime="litert")
    result, rows = doctor(cli, "--config", config)
    assert result.returncode == 1
    assert rows["cameras"]["status"] == "fail" and "/dev/video57" in rows["cameras"]["detail"]


def test_edgetpu_runtime_without_a_tpu_fails_and_passes_when_attached(cli, tmp_path, images_dir):
    config = write_config(tmp_path / "c.toml", source=str(images_dir), runtime="edgetpu")
    result, rows = doctor(cli, "--config", config, env={"LD_LIBRARY_PATH": "", "EDGESIGHT_EDGETPU_LIB": ""})
    assert result.returncode == 1 and rows["edge tpu"]["status"] == "fail"
    assert "libedgetpu1-std" in rows["edge tpu"]["fix"]
    lib = build_fake_libedgetpu(tmp_path / "lib")
    env = {"LD_LIBRARY_PATH": str(lib.parent), "FAKE_EDGETPU_ATTACHED": "0"}
    result, rows = doctor(cli, "--config", config, env=env)
    assert result.returncode == 1 and "no Edge TPU attached" in rows["edge tpu"]["detail"]
    result, rows = doctor(cli, "--config", config, env={**env, "FAKE_EDGETPU_ATTACHED": "1"})
    assert rows["edge tpu"]["status"] == "ok" and result.returncode == 0, rows


def test_tensorrt_runtime_needs_tensorrt(cli, tmp_path, images_dir):
    config = write_config(tmp_path / "c.toml", source=str(images_dir), runtime="tensorrt")
    result, rows = doctor(cli, "--config", config)
    assert result.returncode == 1 and rows["tensorrt"]["status"] == "fail"
    assert "python3-libnvinfer" in rows["tensorrt"]["detail"]
    result, rows = doctor(cli, "--config", config, env={**pythonpath(FAKES), "FAKE_CUDA_DEVICE_NAME": "Orin"})
    assert rows["tensorrt"]["status"] == "ok" and "orin" in rows["tensorrt"]["detail"], rows["tensorrt"]
    # on a Pi (no TensorRT) with the default runtime it is only a warning
    config = write_config(tmp_path / "auto.toml", source=str(images_dir))
    result, rows = doctor(cli, "--config", config)
    assert rows["tensorrt"]["status"] == "warn" and result.returncode == 0


def test_vcgencmd_throttling_is_decoded(cli, tmp_path):
    assert decode_throttled(0x50005) == [
        "under-voltage now",
        "throttled now",
        "under-voltage since boot",
        "throttling since boot",
    ]
    assert decode_throttled(0) == []
    bin_dir = fake_bin(tmp_path / "bin", "vcgencmd", '[ "$1" = get_throttled ] && echo throttled=0x50005\n')
    result, rows = doctor(cli, env=path_env(bin_dir))
    cpu = rows["cpu"]
    assert cpu["status"] == "warn" and "throttled=0x50005" in cpu["detail"] and "under-voltage now" in cpu["detail"]
    assert "power supply" in cpu["fix"] and result.returncode == 0  # a warning, not a failure
    fake_bin(bin_dir, "vcgencmd", "echo throttled=0x0\n")
    _, rows = doctor(cli, env=path_env(bin_dir))
    assert rows["cpu"]["status"] == "ok" and "(never)" in rows["cpu"]["detail"]


def test_service_state_comes_from_systemctl(cli, tmp_path):
    bin_dir = fake_bin(tmp_path / "bin", "systemctl", '[ "$1 $2" = "is-active edgesight" ] && echo failed; exit 3\n')
    _, rows = doctor(cli, env=path_env(bin_dir))
    assert rows["service"]["status"] == "warn" and "failed" in rows["service"]["detail"]
    assert "journalctl -u edgesight" in rows["service"]["fix"]
    fake_bin(bin_dir, "systemctl", "echo active\n")
    _, rows = doctor(cli, env=path_env(bin_dir))
    assert rows["service"] == {"check": "service", "status": "ok", "detail": "edgesight.service is active", "fix": ""}


# --------------------------------------------------------------------------- the broker


def test_reachable_broker_is_ok(cli, tmp_path, broker, images_dir):
    mqtt = f'host = "127.0.0.1"\nport = {broker.port}\ndevice_id = "doc"'
    config = write_config(tmp_path / "c.toml", source=str(images_dir), runtime="litert", mqtt=mqtt)
    result, rows = doctor(cli, "--config", config)
    assert rows["broker"]["status"] == "ok" and f"127.0.0.1:{broker.port}" in rows["broker"]["detail"]
    assert result.returncode == 0, rows


def test_unreachable_broker_fails_when_mqtt_is_on(cli, tmp_path, images_dir):
    mqtt = f'host = "127.0.0.1"\nport = {free_port()}'
    config = write_config(tmp_path / "c.toml", source=str(images_dir), runtime="litert", mqtt=mqtt)
    result, rows = doctor(cli, "--config", config)
    assert result.returncode == 1 and rows["broker"]["status"] == "fail"
    assert "cannot reach" in rows["broker"]["detail"] and "broker" in result.stderr
    # the same broker with MQTT off is not needed
    config = write_config(tmp_path / "off.toml", source=str(images_dir), runtime="litert")
    result, rows = doctor(cli, "--config", config)
    assert rows["broker"]["status"] == "ok" and "MQTT off" in rows["broker"]["detail"] and result.returncode == 0


@pytest.fixture
def auth_broker(tmp_path_factory):
    """A real mosquitto that wants user 'edge' with password 'right'."""
    if MOSQUITTO is None or not Path("/usr/bin/mosquitto_passwd").exists():
        pytest.skip("mosquitto_passwd not installed")
    workdir = tmp_path_factory.mktemp("auth-broker")
    passwd = workdir / "passwd"
    subprocess.run(["/usr/bin/mosquitto_passwd", "-b", "-c", str(passwd), "edge", "right"], check=True)
    passwd.chmod(0o600)
    port = free_port()
    conf = workdir / "mosquitto.conf"
    # as root mosquitto drops to the 'mosquitto' user, which cannot read a private tmp folder: stay us
    user = pwd.getpwuid(os.geteuid()).pw_name
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\nuser {user}\n")
    process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mosquitto with a password file did not start")
            time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(5)


def test_broker_credentials_are_the_configs(cli, tmp_path, auth_broker, images_dir):
    secret = tmp_path / "pw"
    secret.write_text("wrong\n")
    mqtt = f'host = "127.0.0.1"\nport = {auth_broker}\nusername = "edge"\npassword_file = "{secret}"'
    config = write_config(tmp_path / "c.toml", source=str(images_dir), runtime="litert", mqtt=mqtt)
    result, rows = doctor(cli, "--config", config)
    assert result.returncode == 1 and rows["broker"]["status"] == "fail"
    assert "refused" in rows["broker"]["detail"] and "as edge" in rows["broker"]["detail"]
    secret.write_text("right\n")
    result, rows = doctor(cli, "--config", config)
    assert rows["broker"]["status"] == "ok" and result.returncode == 0, rows["broker"]
