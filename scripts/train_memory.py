#!/usr/bin/env python3
"""Peak memory of ``train`` against dataset size: in-memory inputs (--stream off) vs streamed (--stream on).

Not a test: a benchmark for docs/training.md. For each size it draws a synthetic dataset of
JPEG photos (five classes of shapes drawn on random crops of the shared flowers5 photos, 240 px), imports it with
``edgesight data import``, then runs one short training per input path in its own process,
``--epochs-head 1 --epochs-finetune 0 --views 1`` at 160 px on the shared MobileNetV2
weights, and records the child's peak RSS (``wait4``), wall time and photos/s.

    .venv/bin/python scripts/train_memory.py                 # 2,000 and 8,000 photos (~15 min on 2 cores)
    .venv/bin/python scripts/train_memory.py --large         # also 32,000
    .venv/bin/python scripts/train_memory.py --sizes 500 --keep /tmp/bench

``--limit-gb`` caps each training's address space (RLIMIT_AS) so a run that would not fit is
recorded as stopped instead of taking the machine down.
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

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = Path(os.environ.get("EDGESIGHT_TESTDATA", ROOT.parent / "shared" / "testdata")) / "weights"
CLASSES = ("circle", "square", "triangle", "cross", "ring")


def photo_pool() -> list[np.ndarray]:
    """The shared flowers5 photos: backgrounds whose crops differ in large-scale structure."""
    folder = WEIGHTS.parent / "datasets" / "flowers5"
    return [cv2.imread(str(p)) for p in sorted(folder.glob("*/*.jpg"))]


def draw(kind: str, rng: np.random.Generator, pool: list[np.ndarray], size: int = 240) -> np.ndarray:
    """A random crop of a real photo (scale, place, flip, colour) with the class's shape drawn on it.

    Drawn shapes on noise alone are near duplicates to ``data import``'s perceptual hash
    (it kept 1,094 of 2,000); real-photo crops keep nearly all of them.
    """
    source = pool[int(rng.integers(len(pool)))]
    h, w = source.shape[:2]
    side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    image = cv2.resize(source[y0 : y0 + side, x0 : x0 + side], (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        image = image[:, ::-1].copy()
    image = np.clip(image.astype(np.int16) + rng.integers(-40, 41, 3), 0, 255).astype(np.uint8)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    c = rng.integers(size // 3, 2 * size // 3, 2)
    r = int(rng.integers(size // 8, size // 4))
    if kind == "circle":
        cv2.circle(image, (int(c[0]), int(c[1])), r, colour, -1)
    elif kind == "ring":
        cv2.circle(image, (int(c[0]), int(c[1])), r, colour, max(3, r // 4))
    elif kind == "square":
        cv2.rectangle(image, (int(c[0] - r), int(c[1] - r)), (int(c[0] + r), int(c[1] + r)), colour, -1)
    elif kind == "triangle":
        pts = np.array([[c[0], c[1] - r], [c[0] - r, c[1] + r], [c[0] + r, c[1] + r]], np.int32)
        cv2.fillPoly(image, [pts], colour)
    else:
        cv2.line(image, (int(c[0] - r), int(c[1] - r)), (int(c[0] + r), int(c[1] + r)), colour, max(3, r // 4))
        cv2.line(image, (int(c[0] - r), int(c[1] + r)), (int(c[0] + r), int(c[1] - r)), colour, max(3, r // 4))
    return image


def imported(dataset: Path) -> int:
    samples = json.loads((dataset / "dataset.json").read_text())["samples"]
    return len(samples) if isinstance(samples, list) else int(samples)


def make_dataset(root: Path, photos: int, seed: int = 0) -> Path:
    """Write ``photos`` JPEGs in class folders and import them; returns the dataset dir."""
    src, dataset = root / f"src{photos}", root / f"ds{photos}"
    if (dataset / "dataset.json").is_file():
        return dataset
    rng = np.random.default_rng(seed)
    pool = photo_pool()
    for i in range(photos):
        kind = CLASSES[i % len(CLASSES)]
        (src / kind).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(src / kind / f"{i:06d}.jpg"), draw(kind, rng, pool), [cv2.IMWRITE_JPEG_QUALITY, 90])
    cli = [str(Path(sys.executable).parent / "edgesight")]
    subprocess.run([*cli, "data", "import", str(src), str(dataset)], check=True, stdout=subprocess.DEVNULL)
    return dataset


def run_training(dataset: Path, run: Path, stream: str, limit_gb: float | None) -> dict[str, object]:
    cmd = [
        str(Path(sys.executable).parent / "edgesight"),
        "train",
        str(dataset),
        "--out",
        str(run),
        "--weights",
        str(WEIGHTS / "mobilenet_v2_1.0_160_no_top.weights.h5"),
        "--size",
        "160",
        "--epochs-head",
        "1",
        "--epochs-finetune",
        "0",
        "--views",
        "1",
        "--stream",
        stream,
    ]

    def limit() -> None:
        if limit_gb:
            cap = int(limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    t0 = time.perf_counter()
    with open(run.with_suffix(".log"), "w") as log:
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    return {"rc": code, "peak_rss_mb": usage.ru_maxrss / 1024, "wall_s": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000])
    parser.add_argument("--large", action="store_true", help="add the 32,000-photo dataset")
    parser.add_argument("--limit-gb", type=float, help="address-space cap per training (RLIMIT_AS)")
    parser.add_argument("--keep", type=Path, help="work here and keep the datasets (default: a temp dir)")
    args = parser.parse_args()
    sizes = args.sizes + ([32000] if args.large else [])
    work = args.keep or Path(tempfile.mkdtemp(prefix="train-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for photos in sizes:
        print(f"drawing and importing {photos} photos ...", flush=True)
        dataset = make_dataset(work, photos)
        kept = imported(dataset)
        print(f"  import kept {kept} of {photos} photos (the rest: near duplicates)", flush=True)
        for stream in ("off", "on"):
            run = work / f"run{photos}-{stream}"
            if run.exists():
                import shutil

                shutil.rmtree(run)
            result = run_training(dataset, run, stream, args.limit_gb)
            status = "ok" if result["rc"] == 0 else f"stopped (rc {result['rc']}, see {run}.log)"
            rows.append(
                (kept, "in memory (--stream off)" if stream == "off" else "streamed (--stream on)", result, status)
            )
            print(
                f"{photos:>6}  {stream:>3}  peak RSS {result['peak_rss_mb']:7.0f} MB  "
                f"{result['wall_s']:6.0f} s  {kept / result['wall_s']:6.1f} photos/s  {status}",
                flush=True,
            )
    print("\n| photos (imported) | inputs | peak RSS (MB) | wall (s) | photos/s | result |")
    print("| ---: | --- | ---: | ---: | ---: | --- |")
    for photos, path, r, status in rows:
        print(
            f"| {photos:,} | {path} | {r['peak_rss_mb']:.0f} | {r['wall_s']:.0f} | "
            f"{photos / r['wall_s']:.1f} | {status} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
