"""Deploy over a real mosquitto to real `edgesight run` daemons, with real signed bundles and keys.

Devices start on the shared MobileNet V2 as bundle "imagenet-v2 1.0.0" (configured [model]
path); the deployed bundle is the same model signed as "imagenet-v2 2.0.0", so a good rollout
agrees in shadow and the devices' results then name 2.0.0.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import run_cli, testdata_path
from daemon_helpers import DaemonProcess, Subscriber, write_config
from videos import cat_video

from edgesight.device.core.bundle import sha256_file
from edgesight.device.core.signing import generate_keys, sign_bundle
from edgesight.device.deploy.protocol import pack
from edgesight.device.deploy.store import Store, extract

V2 = testdata_path("models", "mobilenet_v2_1.0_224_quant.tflite")
LABELS = testdata_path("models", "imagenet_labels.txt")


def create(out: Path, version: str, key: Path | None = None, labels: Path = LABELS) -> Path:
    args = ["bundle", "create", V2, "--labels", labels, "--out", out, "--probe", testdata_path("images")]
    args += ["--name", "imagenet-v2", "--version", version]
    if key is not None:
        args += ["--sign", key]
    result = run_cli(*args)
    assert result.returncode == 0, result
    return out


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    key, pub = generate_keys(root / "keys")
    video = cat_video(root / "cat.avi", testdata_path("images", "cat_720p.jpg"), count=20, size=(320, 180), fps=10)
    return {
        "root": root,
        "key": key,
        "pub": pub,
        "video": video,
        "old": create(root / "old", "1.0.0"),
        "new": create(root / "new", "2.0.0", key),
    }


def device_config(
    tmp_path: Path,
    name: str,
    port: int,
    parts: dict,
    *,
    keys: bool = True,
    video: Path | None = None,
    mqtt: dict | None = None,
    **deploy,
) -> Path:
    """The config of one test device: the old bundle on the looping cat video, MQTT on ``port``,
    deploys accepted when signed by the test key (none trusted with ``keys=False``); ``mqtt`` and
    ``deploy`` keyword values override the [mqtt] reconnect and [deploy] gate settings."""
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    trusted = json.dumps([str(parts["pub"])] if keys else [])
    reconnect = {"reconnect_min": 1, "reconnect_max": 2, **(mqtt or {})}
    settings = {
        "shadow_frames": 5,
        "shadow_timeout_s": 60,
        "min_agreement": 0.9,
        "min_fps_ratio": 0.0,
        "watch_s": 1.0,
        **deploy,
    }
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    reconnect_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in reconnect.items())
    return write_config(
        folder / "edgesight.toml",
        f"""
[model]
path = "{parts["old"]}"
workers = 1
threads = 1
runtime = "litert"
[source]
spec = "{video or parts["video"]}"
loop = true
realtime = true
[mqtt]
port = {port}
device_id = "{name}"
stats_interval = 0.5
keepalive = 5
{reconnect_lines}
[deploy]
enabled = true
trusted_keys = {trusted}
dir = "{folder / "bundles"}"
{lines}
""",
    )


@pytest.fixture
def fleet(tmp_path, broker, parts):
    """Start named daemons; every one is terminated at the end."""
    started: list[DaemonProcess] = []
    sub = Subscriber(broker.port, "edgesight/#")

    def start(*names: str, keys: bool = True) -> list[DaemonProcess]:
        for name in names:
            config = device_config(tmp_path, name, broker.port, parts, keys=keys)
            started.append(DaemonProcess(["--config", config], tmp_path / f"{name}.log"))
        for name in names:
            sub.wait_topic(f"edgesight/{name}/result", timeout=60)
            sub.wait_topic(f"edgesight/{name}/availability", lambda m: m.text == "online", timeout=30)
        return started

    yield start, sub
    sub.close()
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.terminate(timeout=5)
        daemon.close()


def deploy(broker, bundle: Path, *args: str, wait: float = 120):
    return run_cli("deploy", bundle, "--broker", broker.address, *args, "--wait", str(wait), timeout=wait + 60)


def versions_after(messages: list, device: str, since: int) -> set[str]:
    results = [m for m in messages if m.topic == f"edgesight/{device}/result"]
    return {m.json()["model"]["version"] for m in results[since:]}


def test_rollout_with_a_canary_reaches_every_device_and_results_name_the_new_model(broker, parts, fleet, tmp_path):
    start, sub = fleet
    daemons = start("d1", "d2", "d3")
    result = deploy(broker, parts["new"], "--all", "--canary", "1")
    assert result.returncode == 0, (result, daemons[0].log()[-3000:])
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and all(": active" in line for line in lines), result.stdout
    assert "agreement 1.00" in lines[0]
    for name in ("d1", "d2", "d3"):
        seen = len(sub.on(f"edgesight/{name}/result"))
        sub.wait_for(lambda ms, n=name, s=seen: "2.0.0" in versions_after(ms, n, s), 30, f"{name} results on 2.0.0")
        record = json.loads((tmp_path / name / "bundles" / "active.json").read_text())
        assert record["confirmed"] and record["active"]["version"] == "2.0.0"
    states = [m.json()["state"] for m in sub.on("edgesight/d1/deploy")]
    assert states[:1] == ["receiving"] and "verifying" in states and "shadow" in states and states[-1] == "active"
    # the same version again: a no-op, nothing sent
    again = deploy(broker, parts["new"], "--all")
    assert again.returncode == 0 and again.stdout.count("unchanged") == 3, again
    assert "0 bytes sent" in again.stderr
    # a restarted device boots the recorded bundle, not [model] path
    daemons[0].terminate(timeout=5)
    sub.messages.clear()
    restarted = DaemonProcess(["--config", tmp_path / "d1" / "edgesight.toml"], tmp_path / "d1-again.log")
    daemons.append(restarted)
    msg = sub.wait_topic("edgesight/d1/result", timeout=60)
    assert msg.json()["model"]["version"] == "2.0.0"


def test_tampered_bundle_is_refused_everywhere_and_the_old_model_keeps_classifying(broker, parts, fleet, tmp_path):
    start, sub = fleet
    start("t1", "t2")
    bad = shutil.copytree(parts["new"], tmp_path / "bad")
    labels = bad / "labels.txt"
    labels.write_text(labels.read_text().replace("tabby", "tabbz"))
    result = deploy(broker, bad, "--device", "t1", "--device", "t2")
    assert result.returncode == 1, result
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and all("refused" in line and "labels.txt" in line for line in lines), result.stdout
    for name in ("t1", "t2"):
        seen = len(sub.on(f"edgesight/{name}/result"))
        topic = f"edgesight/{name}/result"
        sub.wait_for(lambda ms, t=topic, s=seen: len([m for m in ms if m.topic == t]) > s + 3, 20, "results go on")
        assert versions_after(sub.on(""), name, seen) == {"1.0.0"}


def test_a_failed_canary_stops_the_rollout(broker, parts, fleet, tmp_path):
    start, sub = fleet
    start("c1", "c2")
    bad = shutil.copytree(parts["new"], tmp_path / "bad")
    (bad / "labels.txt").write_text("x\n" + (bad / "labels.txt").read_text())
    result = deploy(broker, bad, "--device", "c1", "--device", "c2", "--canary", "1")
    assert result.returncode == 1, result
    assert "c1: refused" in result.stdout and "c2: skipped" in result.stdout, result.stdout
    assert not [m for m in sub.on("edgesight/c2/deploy") if m.json().get("state") == "receiving"]


def test_unsigned_bundle_and_a_device_without_keys_are_refused(broker, parts, fleet, tmp_path):
    start, _sub = fleet
    start("u1")
    start("nokeys", keys=False)
    unsigned = shutil.copytree(parts["new"], tmp_path / "unsigned")
    (unsigned / "manifest.sig").unlink()
    result = deploy(broker, unsigned, "--device", "u1")
    assert result.returncode == 1 and "u1: refused" in result.stdout and "unsigned" in result.stdout, result
    result = deploy(broker, parts["new"], "--device", "nokeys")
    assert result.returncode == 1 and "trusted_keys is empty" in result.stdout, result


def test_a_bundle_whose_self_test_fails_is_refused(broker, parts, fleet, tmp_path):
    start, _sub = fleet
    start("s1")
    bad = shutil.copytree(parts["new"], tmp_path / "selftest")
    probes = json.loads((bad / "probes" / "probes.json").read_text())
    probes["probes"][0]["index"] = (probes["probes"][0]["index"] + 7) % 1000
    (bad / "probes" / "probes.json").write_text(json.dumps(probes))
    manifest = json.loads((bad / "manifest.json").read_text())
    entry = manifest["files"]["probes/probes.json"]
    if isinstance(entry, dict):
        entry["sha256"] = sha256_file(bad / "probes" / "probes.json")
        if "bytes" in entry:
            entry["bytes"] = (bad / "probes" / "probes.json").stat().st_size
    else:
        manifest["files"]["probes/probes.json"] = sha256_file(bad / "probes" / "probes.json")
    (bad / "manifest.json").write_text(json.dumps(manifest, indent=2))
    sign_bundle(bad, parts["key"])
    result = deploy(broker, bad, "--device", "s1")
    assert result.returncode == 1 and "s1: refused" in result.stdout and "self-test failed" in result.stdout, result


def test_labels_in_another_order_pass_self_test_but_disagree_in_shadow(broker, parts, fleet, tmp_path):
    start, _sub = fleet
    start("sh1")
    labels = LABELS.read_text().splitlines()
    shuffled = tmp_path / "labels.txt"
    shuffled.write_text("\n".join([labels[0], *reversed(labels[1:])]) + "\n")
    other = create(tmp_path / "reordered", "3.0.0", parts["key"], labels=shuffled)
    result = deploy(broker, other, "--device", "sh1")
    assert result.returncode == 1 and "sh1: refused" in result.stdout and "agreement" in result.stdout, result


def test_offline_device_is_reported_not_waited_for(broker, parts):
    started = time.monotonic()
    result = deploy(broker, parts["new"], "--device", "ghost", wait=20)
    assert result.returncode == 1 and "ghost: offline" in result.stdout, result
    assert time.monotonic() - started < 15


# -- the store and the tar, without a daemon -------------------------------------------------------


def test_extract_refuses_unsafe_members(tmp_path):
    import io
    import tarfile

    for name, kind in (("../evil", tarfile.REGTYPE), ("/abs", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)):
        tar_path = tmp_path / "t.tar"
        with tarfile.open(tar_path, "w") as tar:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            info.size = 0 if kind == tarfile.SYMTYPE else 3
            tar.addfile(info, io.BytesIO(b"abc") if kind == tarfile.REGTYPE else None)
        with pytest.raises(Exception, match="unsafe path|not a regular file"):
            extract(tar_path, tmp_path / "out", 1_000_000)
        assert not (tmp_path / "out").exists()


def test_pack_is_deterministic_and_round_trips(tmp_path, parts):
    data = pack(parts["new"])
    assert data == pack(shutil.copytree(parts["new"], tmp_path / "copy"))
    (tmp_path / "b.tar").write_bytes(data)
    out = extract(tmp_path / "b.tar", tmp_path / "x", 100_000_000)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in Path(parts["new"]).iterdir())


def test_unconfirmed_record_boots_the_previous_bundle(tmp_path):
    from edgesight.device.deploy.store import Entry, Record

    store = Store(tmp_path)
    store.write(Record(Entry("/b/new", "n", "2"), Entry("/b/old", "n", "1"), confirmed=False))
    assert store.read().boot().path == "/b/old"
    store.write(Record(Entry("/b/new", "n", "2"), Entry("/b/old", "n", "1"), confirmed=True))
    assert store.read().boot().path == "/b/new"
