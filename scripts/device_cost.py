#!/usr/bin/env python3
"""What the daemon costs when little happens: CPU, peak RSS and state delay, gating off and on.

    .venv/bin/python scripts/device_cost.py [--seconds 8] [--json out.json] [--broker HOST:PORT]

Three 720p, 30 fps videos made from the shared photos (``device/bench/footage.py`` writes them):

* ``static``: one photo, every frame identical (a door nobody walks through);
* ``changes``: a different photo every ``--every`` seconds, static in between;
* ``motion``: the bench's continuous pan across the cat photo.

Each runs through the real daemon (``Daemon`` as ``edgesight run`` builds it, realtime file
source, MQTT off unless ``--broker``) in a child process, once with ``[gate] enabled = false`` and
once with ``true``. Per case: CPU-seconds per wall-second of the child while it classifies (its own
``getrusage`` from the first frame to the end), its peak RSS (``wait4``'s rusage of the child),
frames classified and gated, and for ``changes`` the delay from each scene change (the frame's due
time in the paced file) to the smoothed state change. A table goes to stdout; ``--json`` writes
the figures. The targets of issue 15 are checked and printed as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FPS = 30.0
SIZE = (1280, 720)
PHOTOS = ("cat_720p.jpg", "hot_dog.jpg", "sunflower.bmp", "face.jpg", "dragonfly.bmp")
MODEL = ("models", "mobilenet_v2_1.0_224_quant.tflite")
LABELS = ("models", "imagenet_labels.txt")


# -- the videos --------------------------------------------------------------------------------------
def make_videos(folder: Path, seconds: float, every: float) -> dict[str, tuple[Path, list[int]]]:
    """Write the three scenes; each comes with the frame indices where its scene changes."""
    import cv2

    from edgesight.device.bench import footage

    data = footage.testdata_dir()
    if data is None:
        raise SystemExit("device_cost: the shared test data is needed (set EDGESIGHT_TESTDATA)")
    photos = []
    for name in PHOTOS:
        image = cv2.imread(str(data / "images" / name))
        if image is None:
            raise SystemExit(f"device_cost: cannot read {data / 'images' / name}")
        photos.append(cv2.resize(image, SIZE, interpolation=cv2.INTER_AREA))
    count = int(seconds * FPS)
    step = int(every * FPS)
    changes = [i for i in range(step, count, step)]
    videos = {
        "static": (footage.write_video(folder / "static.mp4", (photos[0] for _ in range(count)), FPS), []),
        "changes": (
            footage.write_video(folder / "changes.mp4", (photos[(i // step) % len(photos)] for i in range(count)), FPS),
            changes,
        ),
        "motion": (footage.write_video(folder / "motion.mp4", footage.pan_frames(photos[0], count, SIZE), FPS), []),
    }
    return videos


# -- one case, in a child ------------------------------------------------------------------------------
def child(config_path: str) -> int:
    """Run the daemon on one config; print one JSON line with what the parent cannot see."""
    from edgesight.device.config import load_config
    from edgesight.device.daemon import Daemon

    config = load_config(config_path)
    daemon = Daemon(config, wait_for_device=False)
    marks: dict[str, float] = {}
    states: list[tuple[float, str]] = []
    read = daemon.source.read

    def timed_read():
        frame = read()
        if "first" not in marks and frame is not None:
            marks["first"] = time.monotonic()  # the paced file's frame 0 is due about now
            usage = resource.getrusage(resource.RUSAGE_SELF)
            marks["cpu0"] = usage.ru_utime + usage.ru_stime
        return frame

    daemon.source.read = timed_read  # type: ignore[method-assign]
    last = [None]

    def watch_state(result):
        current = daemon.smoother.current
        label = current.label if current else None
        if label != last[0]:
            last[0] = label
            states.append((time.monotonic(), label or ""))

    daemon.consumers.append(watch_state)
    code = daemon.run()
    end = time.monotonic()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - marks.get("cpu0", 0.0)
    wall = end - marks.get("first", end)
    stats = daemon.pipeline.stats()
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    print(
        "RESULT "
        + json.dumps(
            {
                "code": code,
                "wall_s": wall,
                "cpu_s": cpu,
                "classified": daemon.pipeline.frames,
                "gated": stats["gate"].get("gated", 0),
                "dropped": stats["dropped"],
                "first": marks.get("first"),
                "states": states,
                # at the end: what the process itself allocated vs pages of files it maps (libraries:
                # clean page cache, shared and reclaimable, counted in RSS once faulted in)
                "rss_anon_mb": round(int(status.get("RssAnon", "0 kB").split()[0]) / 1024, 1),
                "rss_file_mb": round(int(status.get("RssFile", "0 kB").split()[0]) / 1024, 1),
            }
        ),
        flush=True,
    )
    return code


def drop_page_cache() -> None:
    """As after a boot: a library pip has just written is wholly in the page cache, and the kernel's
    fault-around then maps more of it into a process that imports it (OpenCV's 40 MB library shows
    22 MB resident instead of 6.5), so peak RSS depends on what ran before. Needs root."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        raise SystemExit(f"device_cost: --drop-caches needs root ({exc.strerror})") from None


def run_case(video: Path, gate: bool, folder: Path, broker: str | None, data: Path) -> dict:
    mqtt = "enabled = false"
    if broker:
        host, _, port = broker.partition(":")
        mqtt = f'host = "{host}"\nport = {port or 1883}\ndevice_id = "cost"'
    cfg = folder / f"{video.stem}-{'on' if gate else 'off'}.toml"
    cfg.write_text(
        f'[model]\npath = "{data.joinpath(*MODEL)}"\nlabels = "{data.joinpath(*LABELS)}"\n'
        f'[source]\nspec = "{video}"\nrealtime = true\n'
        f"[gate]\nenabled = {'true' if gate else 'false'}\n"
        f"[mqtt]\n{mqtt}\n"
        f'[snapshot]\ndir = "{folder / "snapshots"}"\n[capture]\ndir = "{folder / "capture"}"\n'
    )
    out_path, err_path = cfg.with_suffix(".out"), cfg.with_suffix(".err")
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(cfg)],
            stdout=out,
            stderr=err,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        _, _, usage = os.wait4(proc.pid, 0)  # reaped here, so the child's own rusage comes back
        proc.returncode = 0
    line = next((x for x in out_path.read_text().splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"device_cost: the child failed on {cfg}:\n{err_path.read_text()[-2000:]}")
    result = json.loads(line[len("RESULT ") :])
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: KiB
    result["child_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)  # start-up included
    return result


def delays(result: dict, changes: list[int]) -> list[float]:
    """Seconds from each scene change's due time to the first state change after it."""
    if not changes or result.get("first") is None:
        return []
    out = []
    for k in changes:
        due = result["first"] + k / FPS
        later = [t for t, _ in result["states"] if t >= due]
        nxt = changes[changes.index(k) + 1] if changes.index(k) + 1 < len(changes) else None
        if later and (nxt is None or later[0] < result["first"] + nxt / FPS):
            out.append(round(later[0] - due, 3))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each video (default 8)")
    parser.add_argument("--every", type=float, default=2.5, help="seconds between scene changes (default 2.5)")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    parser.add_argument("--broker", metavar="HOST:PORT", help="run with MQTT on, against this broker")
    parser.add_argument(
        "--drop-caches", action="store_true", help="drop the page cache before each case, as after a boot (root)"
    )
    parser.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child)
    sys.path.insert(0, str(ROOT))
    from edgesight.device.bench import footage

    data = footage.testdata_dir()
    assert data is not None
    rows = []
    with tempfile.TemporaryDirectory(prefix="device-cost-") as tmp:
        folder = Path(tmp)
        videos = make_videos(folder, args.seconds, args.every)
        for scene, (video, changes) in videos.items():
            for gate in (False, True):
                if args.drop_caches:
                    drop_page_cache()
                result = run_case(video, gate, folder, args.broker, data)
                wall = max(result["wall_s"], 1e-6)
                rows.append(
                    {
                        "scene": scene,
                        "gate": gate,
                        "cpu_per_s": round(result["cpu_s"] / wall, 3),
                        "peak_rss_mb": result["peak_rss_mb"],
                        "rss_anon_mb": result["rss_anon_mb"],
                        "rss_file_mb": result["rss_file_mb"],
                        "classified_fps": round(result["classified"] / wall, 2),
                        "handled_fps": round((result["classified"] + result["gated"]) / wall, 2),
                        "classified": result["classified"],
                        "gated": result["gated"],
                        "dropped": result["dropped"],
                        "wall_s": round(wall, 2),
                        "state_delay_s": delays(result, changes),
                    }
                )
                print(f"  {scene:8s} gate {'on ' if gate else 'off'}: done", file=sys.stderr, flush=True)
    print(table(rows))
    figures = {
        "rows": rows,
        "targets": targets(rows),
        "seconds": args.seconds,
        "fps": FPS,
        "size": list(SIZE),
        "page_cache_dropped": args.drop_caches,
        "mqtt": bool(args.broker),
    }
    print(json.dumps(figures["targets"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def table(rows: list[dict]) -> str:
    head = (
        "| scene | gate | CPU s/s | peak RSS MB | anon / file MB at end | handled fps | classified fps | classified "
        "| gated | dropped | state delay s |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        delay = ", ".join(f"{d:.2f}" for d in r["state_delay_s"]) or "-"
        lines.append(
            f"| {r['scene']} | {'on' if r['gate'] else 'off'} | {r['cpu_per_s']:.3f} | {r['peak_rss_mb']:.0f} | "
            f"{r['rss_anon_mb']:.0f} / {r['rss_file_mb']:.0f} | "
            f"{r['handled_fps']:.1f} | {r['classified_fps']:.1f} | {r['classified']} | {r['gated']} | "
            f"{r['dropped']} | {delay} |"
        )
    return "\n".join(lines)


def targets(rows: list[dict]) -> dict:
    """The ratios issue 15 sets, from this run's rows."""
    by = {(r["scene"], r["gate"]): r for r in rows}

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 3) if values else None

    static = by[("static", True)]["cpu_per_s"] / max(by[("static", False)]["cpu_per_s"], 1e-9)
    on, off = mean(by[("changes", True)]["state_delay_s"]), mean(by[("changes", False)]["state_delay_s"])
    # throughput: frames the pipeline kept up with (classified or decided unchanged) per second
    motion = by[("motion", True)]["handled_fps"] / max(by[("motion", False)]["handled_fps"], 1e-9)
    return {
        "static_cpu_ratio": round(static, 3),
        "static_cpu_ratio_ok": static <= 0.2,
        "state_delay_on_s": on,
        "state_delay_off_s": off,
        "state_delay_extra_s": None if on is None or off is None else round(on - off, 3),
        "state_delay_ok": None if on is None or off is None else (on - off) <= 1 / FPS + 1e-9,
        "motion_throughput_ratio": round(motion, 3),
        "motion_throughput_ok": motion >= 0.97,
        # issue 15: edgesight run on MobileNet V2 with MQTT on, HTTP off: peak RSS <= 120 MB
        "peak_rss_max_mb": max(r["peak_rss_mb"] for r in rows),
        "peak_rss_ok": max(r["peak_rss_mb"] for r in rows) <= 120,
    }


if __name__ == "__main__":
    sys.exit(main())
