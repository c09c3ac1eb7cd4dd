"""MQTT username/password and TLS (CA + client certificate) against a real mosquitto with a test CA."""

from __future__ import annotations

import getpass
import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import MOSQUITTO, assert_one_line_error, free_port, testdata_path
from daemon_helpers import DaemonProcess
from videos import cat_video

USER, PASSWORD = "camera", "s3cret-pass"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A throw-away CA, a broker certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=edgesight test CA",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=d,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            cwd=d,
        )
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), USER, PASSWORD], check=True, capture_output=True)
    (d / "password").write_text(PASSWORD + "\n")
    return d


@pytest.fixture
def tls_broker(tmp_path, pki):
    """mosquitto requiring TLS with a client certificate signed by the test CA, and a password."""
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    # as root, mosquitto drops to user 'mosquitto', which cannot read pytest's private tmp dirs
    conf.write_text(
        f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {pki / 'passwd'}\n"
        f"cafile {pki / 'ca.crt'}\ncertfile {pki / 'server.crt'}\nkeyfile {pki / 'server.key'}\n"
        f"require_certificate true\npersistence false\n"
    )
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=(tmp_path / "mosquitto.log").open("wb")
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None, (tmp_path / "mosquitto.log").read_text()
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(5)


def tls_subscriber(port: int, pki: Path, topic: str):
    got: list = []
    ready = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.tls_set(ca_certs=str(pki / "ca.crt"), certfile=str(pki / "client.crt"), keyfile=str(pki / "client.key"))
    client.username_pw_set(USER, PASSWORD)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *a: ready.set()
    client.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert ready.wait(10)
    return client, got


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return cat_video(
        tmp_path_factory.mktemp("v") / "cat.avi", testdata_path("images", "cat_720p.jpg"), count=20, size=(320, 180)
    )


def secure_config(path: Path, port: int, pki: Path, video: Path, password_line: str) -> Path:
    path.write_text(f"""
[source]
spec = "{video}"
loop = true
realtime = true
[mqtt]
host = "127.0.0.1"
port = {port}
device_id = "sec"
username = "{USER}"
{password_line}
tls = true
ca_file = "{pki / "ca.crt"}"
cert_file = "{pki / "client.crt"}"
key_file = "{pki / "client.key"}"
reconnect_min = 1
reconnect_max = 2
[state]
min_dwell = 0.0
""")
    return path


def test_tls_with_client_certificate_and_password_file(tmp_path, tls_broker, pki, video, v2_model, imagenet_labels):
    client, got = tls_subscriber(tls_broker, pki, "edgesight/sec/#")
    cfg = secure_config(tmp_path / "c.toml", tls_broker, pki, video, f'password_file = "{pki / "password"}"')
    daemon = DaemonProcess(["--config", cfg, "--model", v2_model, "--labels", imagenet_labels], tmp_path / "d.log")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(t.endswith("/state") for t, _ in got):
            time.sleep(0.05)
        states = [json.loads(p) for t, p in got if t.endswith("/state")]
        assert states and states[0]["label"] == "Egyptian cat", daemon.log()[-2000:]
        assert daemon.terminate() == 0
    finally:
        daemon.close()
        client.loop_stop()
        client.disconnect()
    assert ("edgesight/sec/availability", b"offline") in got


def test_wrong_password_is_reported_and_classification_goes_on(
    tmp_path, tls_broker, pki, video, v2_model, imagenet_labels
):
    cfg = secure_config(tmp_path / "c.toml", tls_broker, pki, video, 'password = "wrong"')
    daemon = DaemonProcess(
        ["--config", cfg, "--model", v2_model, "--labels", imagenet_labels, "--max-frames", "60"], tmp_path / "d.log"
    )
    try:
        assert daemon.wait(60) == 0
    finally:
        daemon.close()
    log = daemon.log()
    assert "refused the connection" in log and "stopped after 60 frames" in log and "Traceback" not in log


def test_missing_tls_and_password_files_name_the_key(cli, tmp_path, pki, video, v2_model, imagenet_labels):
    cfg = secure_config(tmp_path / "c.toml", 8883, pki, video, f'password_file = "{tmp_path / "nope"}"')
    result = cli("run", "--config", cfg, "--model", v2_model, "--labels", imagenet_labels)
    assert_one_line_error(result, "[mqtt] password_file", "nope", code=2)
    cfg.write_text(cfg.read_text().replace(str(pki / "ca.crt"), str(tmp_path / "missing-ca.crt")))
    cfg.write_text(cfg.read_text().replace(f'password_file = "{tmp_path / "nope"}"', 'password = "x"'))
    result = cli("run", "--config", cfg, "--model", v2_model, "--labels", imagenet_labels)
    assert_one_line_error(result, "[mqtt] ca_file", "missing-ca.crt", code=2)
