"""The gate a bundle passes before ``cmd/reload`` lets it replace the running model.

Two checks, in this order:

1. **Where it lives** (:func:`bundle_in_models_dir`): a remote reload names a bundle folder under
   ``[model] models_dir``; anything else (an absolute path, ``..``, a symlink that leads out, a
   bare model file, a label file) is refused with one generic reply, so a reply never says
   whether some path exists.
2. **How it behaves** (:func:`run_trial`): the bundle is loaded with the normal
   :class:`~edgesight.device.classify.Classifier` in a *child process* with an address-space cap
   (``RLIMIT_AS``) and a wall-clock timeout, and classifies one blank frame of its input size. A
   valid model with a huge internal tensor (gigabytes, seconds per frame) fails there, not in the
   daemon, whose running model keeps serving meanwhile.

Run by hand: ``python -m edgesight.device.trial BUNDLE [--memory-mb MB] [--runtime KIND]``; it
prints one JSON line (``{"ok": true, ...}``) and exits 0, or prints one line on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .core.bundle import MANIFEST
from .mqtt.commands import CommandRefused

log = logging.getLogger(__name__)

NOT_A_BUNDLE = "refused: not a bundle under models_dir"
# Longest bundle folder name a payload may carry (one path component, as file systems allow).
MAX_NAME = 255


def bundle_in_models_dir(models_dir: str | Path, name: str) -> Path:
    """The bundle folder ``name`` under ``models_dir``, resolved; :class:`CommandRefused` otherwise.

    ``name`` is one folder name: no separators, no ``..``, not hidden, not absolute. The resolved
    path (symlinks followed) must still be under the resolved root and be a directory holding a
    manifest. Whatever the reason, the reply is the same :data:`NOT_A_BUNDLE`; the reason goes to
    the local log only.
    """

    def refuse(why: str) -> CommandRefused:
        return CommandRefused(NOT_A_BUNDLE, f"{name[:80]!r}: {why}")

    if not name or len(name) > MAX_NAME or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise refuse("not a plain folder name")
    if any(ord(c) < 32 for c in name):
        raise refuse("control characters in the name")
    try:
        root = Path(models_dir).resolve(strict=True)
        path = (root / name).resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # missing, a symlink loop, permissions
        raise refuse(f"cannot resolve it under {models_dir} ({exc.__class__.__name__})") from None
    if path == root or not path.is_relative_to(root):
        raise refuse(f"resolves to {path}, outside {root}")
    if not path.is_dir():
        raise refuse("not a directory (bare models and label files are not reloadable)")
    if not (path / MANIFEST).is_file():
        raise refuse(f"no {MANIFEST}")
    return path


@dataclass(frozen=True)
class TrialResult:
    """What the child measured: load and first-frame time, peak memory."""

    load_ms: float
    frame_ms: float
    peak_rss_mb: float


def run_trial(
    model: Path,
    *,
    labels: str | None = None,
    model_file: str | None = None,
    runtime: str = "auto",
    threads: int = 1,
    fit: str | None = None,
    memory_mb: int = 1024,
    timeout_s: float = 60.0,
) -> TrialResult:
    """Try ``model`` in a child process; :class:`CommandRefused` (one line) when it fails.

    Blocks for at most ``timeout_s`` (plus process start-up); call it off the MQTT thread.
    """
    args = [sys.executable, "-m", "edgesight.device.trial", str(model), "--runtime", runtime]
    args += ["--threads", str(threads), "--memory-mb", str(memory_mb), "--timeout", f"{timeout_s:g}"]
    for flag, value in (("--labels", labels), ("--file", model_file), ("--crop", fit)):
        if value:
            args += [flag, value]
    # glibc reserves 64 MB of address space per thread arena; a few arenas keep the cap meaningful
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    started = time.monotonic()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise CommandRefused(
            f"refused: the bundle's trial took longer than {timeout_s:g} s",
            f"{model}: trial still running after {timeout_s:g} s; killed",
        ) from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else ""
        if proc.returncode < 0 or "memory" in last.lower() or "alloc" in last.lower():
            reason = f"needed more than {memory_mb} MB" if memory_mb else "crashed"
        else:
            reason = "failed to load or classify" + (f" within {memory_mb} MB" if memory_mb else "")
        raise CommandRefused(
            f"refused: the bundle's trial {reason}",
            f"{model}: trial exit {proc.returncode} after {time.monotonic() - started:.1f} s: {last[:300]}",
        )
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        return TrialResult(float(report["load_ms"]), float(report["frame_ms"]), float(report["peak_rss_mb"]))
    except (ValueError, KeyError, IndexError, TypeError):
        raise CommandRefused(
            "refused: the bundle's trial failed", f"{model}: trial printed {proc.stdout[-300:]!r}"
        ) from None


# -- the child -------------------------------------------------------------------------------


def _limit(memory_mb: int, timeout_s: float) -> None:
    """Cap the address space and arm a self-destruct, so an orphaned trial still ends."""
    import resource
    import signal

    if memory_mb > 0:
        cap = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    signal.alarm(max(1, int(timeout_s) + 2))


def _child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgesight.device.trial", description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--labels")
    parser.add_argument("--file")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--crop")
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    _limit(args.memory_mb, args.timeout)
    try:
        import numpy as np

        from .classify import Classifier
        from .machine import peak_rss_mb

        t0 = time.perf_counter()
        classifier = Classifier.open(
            args.model, args.labels, runtime=args.runtime, num_threads=args.threads, fit=args.crop, model_file=args.file
        )
        t1 = time.perf_counter()
        contract = classifier.contract
        classifier.classify(np.zeros((contract.height, contract.width, 3), np.uint8))
        t2 = time.perf_counter()
    except MemoryError:
        print(f"trial: out of memory (cap {args.memory_mb} MB)", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the child's one job is to turn any failure into one line
        print(f"trial: {type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    report = {"ok": True, "load_ms": round((t1 - t0) * 1e3, 1), "frame_ms": round((t2 - t1) * 1e3, 1)}
    print(json.dumps({**report, "peak_rss_mb": peak_rss_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
