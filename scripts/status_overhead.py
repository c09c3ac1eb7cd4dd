#!/usr/bin/env python3
"""Does watching the status page slow classification? Pipeline fps with and without viewers.

Runs the daemon in-process on a 720p video made from the shared cat photo (every frame
classified, no pacing), first with [http] off, then on with nobody watching, then with N MJPEG
viewers plus a page poller (stats + latest + snapshot once a second), alternating the runs so
changes in machine load hit all of them alike (the order rotates each round). Prints a table and writes JSON.

    .venv/bin/python scripts/status_overhead.py [--frames 600] [--viewers 4] [--rounds 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from edgesight.device.bench.footage import make_test_video, testdata_dir
from edgesight.device.bench.mqtt_latency import free_port
from edgesight.device.config import validate
from edgesight.device.daemon import Daemon

TESTDATA = testdata_dir() or Path("../shared/testdata")


def config_for(video: Path, http_port: int | None):
    data = {
        "model": {
            "path": str(TESTDATA / "models" / "mobilenet_v2_1.0_224_quant.tflite"),
            "labels": str(TESTDATA / "models" / "imagenet_labels.txt"),
        },
        "source": {"spec": str(video), "loop": True},
        "mqtt": {"enabled": False},
        "drift": {"enabled": False},
    }
    if http_port is not None:
        data["http"] = {"enabled": True, "port": http_port, "mjpeg_fps": 5.0}
    return validate(data, "status_overhead")


def viewer(url: str, stop: threading.Event) -> None:
    """An MJPEG client reading the stream until told to stop."""
    try:
        with urllib.request.urlopen(url + "/stream.mjpg", timeout=10) as response:
            while not stop.is_set() and response.read(65536):
                pass
    except OSError:
        pass


def poller(url: str, stop: threading.Event) -> None:
    """What the status page does every second."""
    while not stop.is_set():
        for path in ("/api/stats", "/api/latest", "/snapshot.jpg"):
            try:
                urllib.request.urlopen(url + path, timeout=10).read()
            except OSError:
                pass
        stop.wait(1.0)


def one_run(video: Path, frames: int, mode: str, viewers: int) -> float:
    port = free_port() if mode != "http off" else None
    daemon = Daemon(config_for(video, port), max_frames=frames)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    runner = threading.Thread(target=daemon.run)
    t0 = time.perf_counter()
    runner.start()
    if mode == "watched":
        url = f"http://127.0.0.1:{port}"
        while daemon.pipeline.frames == 0:
            time.sleep(0.01)
        threads = [threading.Thread(target=viewer, args=(url, stop), daemon=True) for _ in range(viewers)]
        threads.append(threading.Thread(target=poller, args=(url, stop), daemon=True))
        for thread in threads:
            thread.start()
    runner.join()
    elapsed = time.perf_counter() - t0
    stop.set()
    return daemon.pipeline.frames / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--viewers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = make_test_video(Path(tmp) / "cat720.avi", frames=90, image=TESTDATA / "images" / "cat_720p.jpg")
        modes = ("http off", "http on, unwatched", "watched")
        fps: dict[str, list[float]] = {m: [] for m in modes}
        for round_number in range(args.rounds):
            shift = round_number % len(modes)  # rotate the order: no mode always runs first
            for mode in modes[shift:] + modes[:shift]:
                fps[mode].append(one_run(video, args.frames, mode, args.viewers))
                print(f"  {mode:<20} {fps[mode][-1]:6.1f} fps", file=sys.stderr, flush=True)
    base = statistics.median(fps["http off"])
    print(f"{'mode':<34} {'fps (median)':>12} {'vs http off':>12}")
    for mode in modes:
        label = f"{mode} ({args.viewers} MJPEG + page)" if mode == "watched" else mode
        value = statistics.median(fps[mode])
        print(f"{label:<34} {value:12.1f} {value / base:12.2f}")
    if args.json:
        args.json.write_text(json.dumps({"frames": args.frames, "viewers": args.viewers, "fps": fps}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
