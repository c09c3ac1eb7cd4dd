#!/usr/bin/env python3
"""Run the standard benchmark set and keep the result: bench/results-<host>-<date>.json and .md

    scripts/bench.py                          # both shared models, threads 1,2,4, pipeline, MQTT
    scripts/bench.py models/flowers           # ... plus your bundles or models, side by side
    scripts/bench.py -- --runs 50 --frames 100  # extra flags for `edgesight bench` after --

The set is the same on every machine (threads 1,2,4 even on 2 cores) so that two result files,
say a Pi 4's and a Pi 5's, compare figure by figure: scripts/compare_bench.py A.json B.json.
An existing result file is never overwritten; a numbered name is used instead.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
MODELS = ("mobilenet_v2_1.0_224_quant.tflite", "mobilenet_v1_0.25_128_quant.tflite")


def reexec_in_venv() -> None:
    """Use the project's venv when this interpreter lacks edgesight (e.g. run as scripts/bench.py)."""
    try:
        import edgesight.device  # noqa: F401
    except ImportError:
        if VENV_PYTHON.exists() and Path(sys.executable).resolve() != VENV_PYTHON.resolve():
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
        sys.exit("scripts/bench.py: edgesight is not installed; run scripts/setup.sh first")


def free_name(out_dir: Path, stem: str) -> Path:
    """``stem``, or ``stem-2``, ``stem-3``... : the first name with neither a .json nor a .md yet."""
    candidate, number = stem, 1
    while (out_dir / f"{candidate}.json").exists() or (out_dir / f"{candidate}.md").exists():
        number += 1
        candidate = f"{stem}-{number}"
    return out_dir / candidate


def main() -> int:
    reexec_in_venv()
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", metavar="MODEL_OR_BUNDLE", help="more models or bundles to include")
    parser.add_argument("--out", default=str(ROOT / "bench"), help="folder for the result files (bench/)")
    parser.add_argument(
        "--testdata",
        help="the shared test data (default: $EDGESIGHT_TESTDATA or ../shared/testdata)",
        default=os.environ.get("EDGESIGHT_TESTDATA", str(ROOT.parent / "shared" / "testdata")),
    )
    args = parser.parse_args(argv)
    models_dir = Path(args.testdata) / "models"
    shared = [models_dir / name for name in MODELS]
    missing = [str(p) for p in shared if not p.exists()]
    if missing:
        print(
            f"scripts/bench.py: error: shared model(s) not found: {', '.join(missing)} "
            f"(set EDGESIGHT_TESTDATA or --testdata)",
            file=sys.stderr,
        )
        return 1
    out = free_name(Path(args.out), f"results-{socket.gethostname()}-{date.today().isoformat()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "edgesight.device.cli",
        "bench",
        *map(str, shared),
        *args.models,
        "--labels",
        str(models_dir / "imagenet_labels.txt"),
        "--threads",
        "1,2,4",
        "--mqtt",
        "--json",
        f"{out}.json",
        "--markdown",
        f"{out}.md",
        *extra,
    ]
    print("$ edgesight " + " ".join(command[3:]), file=sys.stderr)
    code = subprocess.call(command)
    if code == 0:
        print(f"wrote {out}.json and {out}.md", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
