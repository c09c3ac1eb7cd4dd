#!/usr/bin/env python3
"""Deploy benchmark: rollout wall time and bytes through the broker for N devices on this machine.

For each fleet size (``--devices 1,5``; 20 is possible but heavy on a 2-core machine) it starts
a real mosquitto and N real ``edgesight run`` daemons on a small generated video, then times
``edgesight deploy NEW --all`` from its start to its exit (every device ``active``: received,
verified, trial, self-test, shadow, switch, watch). Bytes are the chunk payload the sender
published and mosquitto's own ``$SYS/broker/bytes/{received,sent}`` during the rollout (which
also count the devices' ordinary results and stats traffic). For the first device it also
counts the classification results per second in the 10 s before the offer and during its own
shadow phase: the shadow must not slow the running model. Prints a table, writes JSON.

    .venv/bin/python scripts/deploy_bench.py [--devices 1,5] [--json build/deploy_bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = Path(os.environ.get("EDGESIGHT_TESTDATA", ROOT.parent / "shared" / "testdata"))
CLI = [sys.executable, "-m", "edgesight.device.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Recorder:
    """Every message under edgesight/# and $SYS byte counters, with arrival times."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[float, str, bytes]] = []
        self.sys: dict[str, int] = {}
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            [(f"edgesight/+/{t}", 0) for t in ("availability", "result", "deploy")]
            + [("$SYS/broker/bytes/received", 0), ("$SYS/broker/bytes/sent", 0)]
        )
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise SystemExit("bench: cannot subscribe to the broker")

    def _message(self, client, userdata, message) -> None:
        with self.lock:
            if message.topic.startswith("$SYS/"):
                self.sys[message.topic.rsplit("/", 1)[-1]] = int(message.payload)
            else:
                self.messages.append((time.monotonic(), message.topic, message.payload))

    def on(self, topic: str) -> list[tuple[float, bytes]]:
        with self.lock:
            return [(t, p) for t, top, p in self.messages if top == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"bench: timed out waiting for {what}")


def make_parts(work: Path) -> dict[str, Path]:
    model = TESTDATA / "models" / "mobilenet_v2_1.0_224_quant.tflite"
    labels = TESTDATA / "models" / "imagenet_labels.txt"
    if not model.exists():
        raise SystemExit(f"bench: shared test data not found under {TESTDATA} (set EDGESIGHT_TESTDATA)")
    subprocess.run([*CLI, "keys", "generate", str(work / "keys")], check=True, capture_output=True)
    parts = {"key": work / "keys" / "deploy.key", "pub": work / "keys" / "deploy.pub"}
    for name, version, sign in (("old", "1.0.0", False), ("new", "2.0.0", True)):
        args = [*CLI, "bundle", "create", str(model), "--labels", str(labels), "--out", str(work / name)]
        args += ["--probe", str(TESTDATA / "images"), "--name", "imagenet-v2", "--version", version]
        if sign:
            args += ["--sign", str(parts["key"])]
        subprocess.run(args, check=True, capture_output=True)
        parts[name] = work / name
    import cv2

    from edgesight.device.bench import footage  # the same panning footage the tests use

    cat = cv2.imread(str(TESTDATA / "images" / "cat_720p.jpg"))
    parts["video"] = footage.write_video(work / "cat.avi", footage.pan_frames(cat, 60, (160, 90)), fps=5)
    return parts


def device_config(folder: Path, name: str, port: int, parts: dict[str, Path], shadow_frames: int) -> Path:
    folder.mkdir(parents=True)
    path = folder / "edgesight.toml"
    path.write_text(
        f"""
[model]
path = "{parts["old"]}"
workers = 1
threads = 1
runtime = "litert"
[source]
spec = "{parts["video"]}"
loop = true
realtime = true
[mqtt]
port = {port}
device_id = "{name}"
stats_interval = 2
[deploy]
enabled = true
trusted_keys = ["{parts["pub"]}"]
dir = "{folder / "bundles"}"
shadow_frames = {shadow_frames}
shadow_timeout_s = 300
min_agreement = 0.9
min_fps_ratio = 0.0
watch_s = 2.0
""",
        encoding="utf-8",
    )
    return path


def one_size(n: int, parts: dict[str, Path], work: Path, shadow_frames: int) -> dict:
    port = free_port()
    brokerdir = work / f"broker-{n}"
    brokerdir.mkdir()
    conf = brokerdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nsys_interval 1\n")
    broker = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    daemons: list[subprocess.Popen] = []
    try:
        wait(lambda: _listening(port), 10, "mosquitto")
        rec = Recorder(port)
        names = [f"bench{i:02d}" for i in range(1, n + 1)]
        for name in names:
            cfg = device_config(work / f"n{n}" / name, name, port, parts, shadow_frames)
            log = (work / f"n{n}" / f"{name}.log").open("wb")
            daemons.append(subprocess.Popen([*CLI, "run", "--config", str(cfg)], stdout=log, stderr=log))
        for name in names:
            wait(lambda name=name: rec.on(f"edgesight/{name}/availability"), 120, f"{name} online")
            wait(lambda name=name: len(rec.on(f"edgesight/{name}/result")) > 5, 120, f"{name} results")
        time.sleep(10.5)  # 10 s of results at full speed before the offer, and a fresh $SYS sample
        sys_before = dict(rec.sys)
        started = time.monotonic()
        result = subprocess.run(
            [*CLI, "deploy", str(parts["new"]), "--broker", f"127.0.0.1:{port}", "--all", "--wait", "600"],
            capture_output=True,
            text=True,
        )
        wall = time.monotonic() - started
        time.sleep(2.5)
        sys_after = dict(rec.sys)
        active = result.stdout.count(": active")
        sent = _bytes_sent(result.stderr)
        first = names[0]
        fps_before, fps_shadow = _fps_around_shadow(rec, first, started)
        rec.close()
        retained_count, retained_bytes = _retained(port, first)
        return {
            "devices": n,
            "active": active,
            "exit": result.returncode,
            "wall_s": round(wall, 2),
            "payload_bytes_sent": sent,
            "broker_bytes_received": _delta(sys_before, sys_after, "received"),
            "broker_bytes_sent": _delta(sys_before, sys_after, "sent"),
            "fps_before": fps_before,
            "fps_shadow": fps_shadow,
            "retained_messages_per_device": retained_count,
            "retained_bytes_per_device": retained_bytes,
            "output": result.stdout.strip().splitlines()[:3],
        }
    finally:
        for proc in daemons:
            proc.terminate()
        for proc in daemons:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.terminate()
        broker.wait(5)


def _retained(port: int, device: str) -> tuple[int, int]:
    """How many retained messages (and bytes of topic + payload) one device leaves on the broker."""
    seen: dict[str, int] = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def got(c, u, message) -> None:
        if message.retain and (device in message.topic):
            seen[message.topic] = len(message.topic) + len(message.payload)

    client.on_message = got
    client.on_connect = lambda c, u, f, rc, p: c.subscribe([(f"edgesight/{device}/#", 0), ("homeassistant/#", 0)])
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(2.0)
    client.loop_stop()
    client.disconnect()
    return len(seen), sum(seen.values())


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _bytes_sent(stderr: str) -> int:
    words = stderr.split()
    for i, word in enumerate(words[1:], 1):
        if word == "bytes" and words[i - 1].isdigit():
            return int(words[i - 1])
    return 0


def _delta(before: dict, after: dict, key: str) -> int | None:
    return after[key] - before[key] if key in before and key in after else None


def _fps_around_shadow(rec: Recorder, name: str, offered: float) -> tuple[float | None, float | None]:
    """Results per second in the 10 s before the deploy started, and between its shadow and next step."""
    results = [t for t, _ in rec.on(f"edgesight/{name}/result")]
    steps = []
    for t, payload in rec.on(f"edgesight/{name}/deploy"):
        try:
            steps.append((t, json.loads(payload).get("state")))
        except ValueError:
            continue
    before = [t for t in results if offered - 10 <= t < offered]
    shadow_start = next((t for t, s in steps if s == "shadow"), None)
    shadow_end = next((t for t, s in steps if shadow_start and t > shadow_start and s != "shadow"), None)
    fps_before = round(len(before) / 10, 2) if before else None
    if shadow_start is None or shadow_end is None or shadow_end - shadow_start < 0.5:
        return fps_before, None
    during = [t for t in results if shadow_start <= t < shadow_end]
    return fps_before, round(len(during) / (shadow_end - shadow_start), 2)


def table(rows: list[dict]) -> str:
    head = (
        "| devices | active | rollout wall (s) | payload sent (MB) | broker in (MB) | broker out (MB) "
        "| fps before | fps in shadow |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:

        def mb(v):
            return f"{v / 1e6:.1f}" if isinstance(v, int) else "-"

        lines.append(
            f"| {r['devices']} | {r['active']} | {r['wall_s']:.1f} | {mb(r['payload_bytes_sent'])} | "
            f"{mb(r['broker_bytes_received'])} | {mb(r['broker_bytes_sent'])} | {r['fps_before'] or '-'} | "
            f"{r['fps_shadow'] or '-'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,5", help="fleet sizes, comma separated (default 1,5; 20 is heavy)")
    parser.add_argument("--shadow-frames", type=int, default=25, help="[deploy] shadow_frames of each device")
    parser.add_argument("--json", default=str(ROOT / "build" / "deploy_bench.json"), help="where to write the JSON")
    args = parser.parse_args()
    sizes = [int(s) for s in args.devices.split(",") if s.strip()]
    work = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    try:
        parts = make_parts(work)
        rows = []
        for n in sizes:
            print(f"bench: {n} device(s)...", file=sys.stderr)
            rows.append(one_size(n, parts, work, args.shadow_frames))
        packed = sum(p.stat().st_size for p in parts["new"].rglob("*") if p.is_file())
        report = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "bundle_files_bytes": packed,
            "video": "160x90, 5 fps, realtime",
            "shadow_frames": args.shadow_frames,
            "rows": rows,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(table(rows))
        retained = rows[-1]
        print(
            f"(bundle {packed / 1e6:.1f} MB of files; a device keeps {retained['retained_messages_per_device']} "
            f"retained messages, {retained['retained_bytes_per_device']} bytes; JSON in {args.json})"
        )
        return 0 if all(r["exit"] == 0 for r in rows) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
