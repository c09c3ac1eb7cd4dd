"""Deploy when things go wrong, with real parts: a broker restarted mid-transfer, a daemon killed
during the watch, a device that stalls after the switch, a bundle pulled over HTTP, two bridged
brokers.

Devices start on "imagenet-v2 1.0.0" ([model] path) and are sent "imagenet-v2 2.0.0" (the same
model, signed), as in test_deploy.py.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import MOSQUITTO, free_port, run_cli, testdata_path
from daemon_helpers import DaemonProcess, Subscriber, retained, write_config
from test_deploy import create, device_config, parts  # noqa: F401 - parts is the shared module fixture
from videos import cat_video

from edgesight.device.deploy.sender import Broker, Sender, Watcher, package

config = device_config  # one device config for every deploy test (tests/test_deploy.py)


class Devices:
    """Daemons started in one test; each one killed at the end."""

    def __init__(self, tmp_path: Path, port: int) -> None:
        self.tmp_path, self.port = tmp_path, port
        self.started: list[DaemonProcess] = []
        self.sub = Subscriber(port, "edgesight/#")

    def start(self, cfg: Path, name: str) -> DaemonProcess:
        daemon = DaemonProcess(["--config", cfg], self.tmp_path / f"{name}-{len(self.started)}.log")
        self.started.append(daemon)
        return daemon

    def wait_up(self, name: str, since: int = 0) -> None:
        self.sub.wait_for(lambda ms: len(self.results(name, ms)) > since, 60, f"{name} results")
        self.sub.wait_topic(f"edgesight/{name}/availability", lambda m: m.text == "online", timeout=30)

    def results(self, name: str, messages: list | None = None) -> list:
        messages = self.sub.on("") if messages is None else messages
        return [m for m in messages if m.topic == f"edgesight/{name}/result"]

    def wait_version(self, name: str, version: str, since: int, timeout: float = 60) -> None:
        def seen(ms: list) -> bool:
            return any(m.json()["model"]["version"] == version for m in self.results(name, ms)[since:])

        self.sub.wait_for(seen, timeout, f"{name} results naming {version}")

    def close(self) -> None:
        self.sub.close()
        for daemon in self.started:
            daemon.close()


@pytest.fixture
def devices(tmp_path, request):
    made: list[Devices] = []

    def make(port: int) -> Devices:
        made.append(Devices(tmp_path, port))
        return made[-1]

    yield make
    for d in made:
        d.close()


def deploy_states(dev: Devices, name: str) -> list[dict]:
    return [m.json() for m in dev.sub.on(f"edgesight/{name}/deploy") if m.payload]


def test_broker_restart_in_the_middle_of_a_transfer_resumes_with_only_the_missing_chunks(
    persistent_broker,
    parts,  # noqa: F811
    devices,
    tmp_path,
):
    # the device comes back after the sender: chunks sent in between have no subscriber and are lost
    dev = devices(persistent_broker.port)
    dev.start(
        config(tmp_path, "rs1", persistent_broker.port, parts, mqtt={"reconnect_min": 4, "reconnect_max": 4}), "rs1"
    )
    dev.wait_up("rs1")
    pkg = package(parts["new"])
    chunk = 64 * 1024
    total = -(-len(pkg.data) // chunk)
    cut = {"done": False}

    def on_chunk(_device: str, number: int) -> None:
        if number == total // 2 and not cut["done"]:
            cut["done"] = True
            time.sleep(1.0)  # the first half reaches the device
            persistent_broker.restart(down_s=1.0)

    watcher = Watcher(Broker("127.0.0.1", persistent_broker.port), "edgesight")
    try:
        watcher.settle(1.0)
        sender = Sender(watcher, pkg, wait_s=150, chunk_bytes=chunk, stall_s=3.0, on_chunk=on_chunk)
        outcomes = sender.deploy(["rs1"])
    finally:
        watcher.close()
    log = dev.started[0].log()[-3000:]
    assert cut["done"] and outcomes[0].state == "active", (outcomes, log)
    # the device said which chunks it still needed, and only those were sent again
    answers = [b for b in deploy_states(dev, "rs1") if b.get("missing")]
    assert answers, (deploy_states(dev, "rs1"), log)
    assert 0 < len(answers[-1]["missing"]) < total and answers[-1]["received"] > 0, answers[-1]
    assert sender.resends < total and sender.chunks_sent < 2 * total, (sender.resends, sender.chunks_sent, total)
    # the sender saw `active` through its own subscription; this test's subscriber may be a beat behind
    deadline = time.monotonic() + 15
    while deploy_states(dev, "rs1")[-1]["state"] != "active" and time.monotonic() < deadline:
        time.sleep(0.1)
    final = deploy_states(dev, "rs1")[-1]
    assert final["state"] == "active" and final["version"] == "2.0.0"
    # shadow measured the score distribution of both models on the same frames
    assert 0 < final["score_mean"] <= 1 and 0 < final["old_score_mean"] <= 1, final
    assert abs(final["score_mean"] - final["old_score_mean"]) < 0.05, final  # the same model: same scores
    dev.wait_version("rs1", "2.0.0", len(dev.results("rs1")) - 1)


def _deploy_in_background(broker_address: str, bundle: Path, device: str, wait: float, out: Path):
    return subprocess.Popen(
        [sys.executable, "-m", "edgesight.device.cli", "deploy", str(bundle), "--broker", broker_address]
        + ["--device", device, "--wait", str(wait)],
        stdout=out.open("w"),
        stderr=subprocess.STDOUT,
    )


def test_daemon_killed_during_the_watch_boots_the_previous_good_bundle(broker, parts, devices, tmp_path):  # noqa: F811
    """Documented behaviour: the switch is confirmed only when the watch passes; killed before, the
    restarted device runs the previous bundle and says rolled_back naming the one that was on watch."""
    dev = devices(broker.port)
    cfg = config(tmp_path, "k1", broker.port, parts, watch_s=120.0)
    daemon = dev.start(cfg, "k1")
    dev.wait_up("k1")
    since = len(dev.results("k1"))
    sender = _deploy_in_background(broker.address, parts["new"], "k1", 90, tmp_path / "deploy.out")
    try:
        dev.wait_version("k1", "2.0.0", since, timeout=90)  # switched: the watch runs now
        record = json.loads((tmp_path / "k1" / "bundles" / "active.json").read_text())
        assert record["confirmed"] is False and record["active"]["version"] == "2.0.0", record
        os.kill(daemon.proc.pid, signal.SIGKILL)
        daemon.proc.wait(10)
        since = len(dev.results("k1"))
        dev.start(cfg, "k1")
        dev.wait_up("k1", since)
        time.sleep(1.0)
        versions = {m.json()["model"]["version"] for m in dev.results("k1")[since:]}
        assert versions == {"1.0.0"}, versions
        state = dev.sub.wait_topic(
            "edgesight/k1/deploy", lambda m: m.payload and m.json()["state"] == "rolled_back", timeout=20
        ).json()
        assert state["version"] == "2.0.0" and "restarted during the watch" in state["reason"], state
        record = json.loads((tmp_path / "k1" / "bundles" / "active.json").read_text())
        assert record["confirmed"] is True and record["active"]["path"] == str(parts["old"]), record
        assert sender.wait(60) == 1
        out = (tmp_path / "deploy.out").read_text()
        assert "k1: rolled_back" in out, out
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()


def test_a_device_that_stops_classifying_after_the_switch_rolls_back(broker, parts, devices, tmp_path):  # noqa: F811
    """The watch sees no frame for watch_s / 2 (here the daemon is frozen with SIGSTOP right after the
    switch, as a wedged camera driver or a thermal stall would): the old bundle comes back."""
    dev = devices(broker.port)
    # watch_s 10: the freeze (6.5 s) outlasts watch_s / 2 even when the first 2.0.0 result reaches
    # the subscriber seconds after the switch on a loaded machine.
    daemon = dev.start(config(tmp_path, "w1", broker.port, parts, watch_s=10.0), "w1")
    dev.wait_up("w1")
    since = len(dev.results("w1"))
    sender = _deploy_in_background(broker.address, parts["new"], "w1", 90, tmp_path / "deploy.out")
    try:
        dev.wait_version("w1", "2.0.0", since, timeout=90)
        os.kill(daemon.proc.pid, signal.SIGSTOP)
        time.sleep(6.5)
        os.kill(daemon.proc.pid, signal.SIGCONT)
        assert sender.wait(60) == 1
        out = (tmp_path / "deploy.out").read_text()
        assert "w1: rolled_back" in out and ("stalled for" in out or "no frame classified" in out), out
        state = retained(broker.port, "edgesight/w1/deploy").json()
        assert state["state"] == "rolled_back" and state["version"] == "2.0.0", state
        since = len(dev.results("w1"))
        dev.wait_version("w1", "1.0.0", since, timeout=30)
        time.sleep(1.0)
        assert {m.json()["model"]["version"] for m in dev.results("w1")[since + 1 :]} == {"1.0.0"}
        record = json.loads((tmp_path / "w1" / "bundles" / "active.json").read_text())
        assert record["confirmed"] is True and record["active"]["path"] == str(parts["old"]), record
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)
        if sender.poll() is None:
            sender.kill()
            sender.wait()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D102 - keep pytest's output clean
        pass


def test_url_pull_over_http_and_file_urls_outside_the_pull_folder_refused(broker, parts, devices, tmp_path):  # noqa: F811
    dev = devices(broker.port)
    dev.start(config(tmp_path, "p1", broker.port, parts), "p1")
    dev.wait_up("p1")
    served = tmp_path / "www"
    served.mkdir()
    tar = served / "bundle.tar"
    # file:// outside <[deploy] dir>/drop: refused, nothing sent over the broker
    result = run_cli(
        "deploy", parts["new"], "--broker", broker.address, "--device", "p1", "--wait", "60",
        "--pack-to", tar, "--url", tar.as_uri(), timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and "p1: refused" in result.stdout, result
    assert "outside the pull folder" in result.stdout and "0 bytes sent" in result.stderr, result
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = run_cli(
            "deploy", parts["new"], "--broker", broker.address, "--device", "p1", "--wait", "90",
            "--url", f"{url}/missing.tar", timeout=150,
        )  # fmt: skip
        assert result.returncode == 1 and "HTTP 404" in result.stdout, result
        result = run_cli(
            "deploy", parts["new"], "--broker", broker.address, "--device", "p1", "--wait", "90",
            "--url", f"{url}/bundle.tar", timeout=150,
        )  # fmt: skip
        assert result.returncode == 0 and "p1: active" in result.stdout, (result, dev.started[0].log()[-2000:])
        assert "0 bytes sent" in result.stderr, result
    finally:
        server.shutdown()
        server.server_close()
    dev.wait_version("p1", "2.0.0", len(dev.results("p1")) - 1)


def _bridged_site(workdir: Path, central_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = workdir / "site.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"connection central\naddress 127.0.0.1:{central_port}\ntopic edgesight/# both 1\n"
        "cleansession true\nrestart_timeout 1 2\n"
    )
    log = (workdir / "site.log").open("ab")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf), "-v"], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError((workdir / "site.log").read_text())


def test_a_deploy_on_the_central_broker_reaches_a_device_on_a_bridged_site_broker(broker, parts, devices, tmp_path):  # noqa: F811
    site, site_port = _bridged_site(tmp_path, broker.port)
    try:
        site_dev = devices(site_port)
        site_dev.start(config(tmp_path, "b1", site_port, parts), "b1")
        site_dev.wait_up("b1")
        # the central broker sees the site device's retained availability through the bridge
        central = Subscriber(broker.port, "edgesight/#")
        try:
            central.wait_topic("edgesight/b1/availability", lambda m: m.text == "online", timeout=30)
        finally:
            central.close()
        result = run_cli("deploy", parts["new"], "--broker", broker.address, "--all", "--wait", "120", timeout=180)
        assert result.returncode == 0 and result.stdout.strip() == result.stdout.strip().splitlines()[0], result
        assert result.stdout.startswith("b1: active"), (result, site_dev.started[0].log()[-2000:])
        site_dev.wait_version("b1", "2.0.0", len(site_dev.results("b1")) - 1)
        fleet = run_cli("fleet", "--broker", broker.address, "--json", timeout=60)
        assert fleet.returncode == 0, fleet
        rows = json.loads(fleet.stdout)
        row = next(r for r in rows if "b1" in json.dumps(r))
        assert "2.0.0" in json.dumps(row), row
    finally:
        site.terminate()
        site.wait(5)


@pytest.mark.long  # five MobileNet V2 daemons on 2 cores: minutes; test_deploy.py rolls out to three in the suite
def test_rollout_to_five_devices_with_one_canary(broker, parts, devices, tmp_path):  # noqa: F811
    """Five real daemons on a 3 fps video (CPU: two cores are shared), one canary first."""
    video = cat_video(tmp_path / "slow.avi", testdata_path("images", "cat_720p.jpg"), count=9, size=(160, 90), fps=3)
    dev = devices(broker.port)
    names = [f"f{n}" for n in range(1, 6)]
    for name in names:
        dev.start(config(tmp_path, name, broker.port, parts, video=video, shadow_frames=3), name)
    for name in names:
        dev.wait_up(name)
    result = run_cli(
        "deploy", parts["new"], "--broker", broker.address, "--all", "--canary", "1", "--wait", "150", timeout=400
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and len(lines) == 5 and all(": active" in line for line in lines), result
    # the canary finished before any other device was offered the bundle
    first = [m for m in dev.sub.on("/deploy") if m.payload and m.json().get("state") == "receiving"]
    assert first and first[0].topic == "edgesight/f1/deploy", [m.topic for m in first]
    canary_done = next(
        i for i, m in enumerate(dev.sub.messages) if m.topic == "edgesight/f1/deploy" and m.json()["state"] == "active"
    )
    others = [
        i
        for i, m in enumerate(dev.sub.messages)
        if m.topic.endswith("/deploy") and m.topic != "edgesight/f1/deploy" and m.json().get("state") == "receiving"
    ]
    assert others and min(others) > canary_done
    for name in names:
        dev.wait_version(name, "2.0.0", len(dev.results(name)) - 1, timeout=60)


# -- the pull itself, without a daemon ---------------------------------------------------------------


def test_pull_reads_file_urls_only_under_the_pull_folder(tmp_path):
    from edgesight.device.deploy.pull import PullError, fetch

    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "b.tar").write_bytes(b"x" * 5000)
    fetch((drop / "b.tar").as_uri(), tmp_path / "got.tar", 5000, allowed_dir=drop)
    assert (tmp_path / "got.tar").read_bytes() == b"x" * 5000
    (tmp_path / "secret").write_bytes(b"y" * 5000)
    (drop / "escape.tar").symlink_to(tmp_path / "secret")
    for url, size, words in (
        ((tmp_path / "secret").as_uri(), 5000, "outside the pull folder"),
        ((drop / "escape.tar").as_uri(), 5000, "outside the pull folder"),
        ((drop / "b.tar").as_uri(), 4000, "not a regular file of the announced 4000 bytes"),
        ((drop / "none.tar").as_uri(), 5000, "no such file"),
        ("ftp://host/b.tar", 5000, "only http://"),
    ):
        with pytest.raises(PullError, match=words):
            fetch(url, tmp_path / "out.tar", size, allowed_dir=drop)
    with pytest.raises(PullError, match="no pull folder"):
        fetch((drop / "b.tar").as_uri(), tmp_path / "out.tar", 5000, allowed_dir=None)


def test_pull_over_http_is_capped_at_the_announced_size(tmp_path):
    from edgesight.device.deploy.pull import PullError, fetch

    (tmp_path / "big.tar").write_bytes(b"z" * 300_000)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/big.tar"
        with pytest.raises(PullError, match="serves 300000 bytes, the offer announced 1000"):
            fetch(url, tmp_path / "out.tar", 1000, allowed_dir=None)
        fetch(url, tmp_path / "ok.tar", 300_000, allowed_dir=None, timeout_s=5)
        assert (tmp_path / "ok.tar").stat().st_size == 300_000
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(PullError, match="cannot fetch"):
        fetch(url, tmp_path / "out.tar", 1000, allowed_dir=None, timeout_s=2)


def test_link_add_subscription_is_made_again_after_a_broker_restart(broker, tmp_path):
    """The receiver's subscriptions live in the link: every connect (a restarted broker too) makes them again."""
    import paho.mqtt.client as paho

    from edgesight.device.config import load_config
    from edgesight.device.mqtt.link import MqttLink

    cfg = write_config(
        tmp_path / "link.toml",
        f'[model]\npath = "x"\n[mqtt]\nport = {broker.port}\ndevice_id = "l1"\nreconnect_min = 1\nreconnect_max = 1\n',
    )
    link = MqttLink(load_config(cfg))
    got: list[bytes] = []
    hooks: list[int] = []
    topic = "edgesight/l1/deploy/offer"
    link.add_subscription(topic, 1, lambda c, u, m: got.append(m.payload), lambda: hooks.append(1))
    link.start()
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2)
    try:
        for attempt in (b"one", b"two"):
            deadline = time.monotonic() + 20
            while len(got) < (1 if attempt == b"one" else 2) and time.monotonic() < deadline:
                try:
                    if not pub.is_connected():
                        pub.connect("127.0.0.1", broker.port)
                        pub.loop_start()
                    pub.publish("edgesight/l1/deploy/offer", attempt, qos=1)
                except OSError:
                    pass
                time.sleep(0.5)
            assert attempt in got, (attempt, got)
            if attempt == b"one":
                pub.loop_stop()
                pub.disconnect()
                pub = paho.Client(paho.CallbackAPIVersion.VERSION2)
                broker.restart(down_s=0.5)
        assert len(hooks) >= 2 and link.reconnects >= 1, (hooks, link.reconnects)
    finally:
        pub.loop_stop()
        pub.disconnect()
        link.stop()


def test_deploy_url_must_be_http_https_or_file(parts, broker):  # noqa: F811
    from conftest import assert_one_line_error

    result = run_cli("deploy", parts["new"], "--broker", broker.address, "--all", "--url", "ftp://x/b.tar")
    assert_one_line_error(result, "--url", "http://, https:// or file://", code=2)
