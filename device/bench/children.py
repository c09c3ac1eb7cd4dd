"""Child-process runs: a measurement in a fresh interpreter, and the registry of what one may run.

The pipeline and the sequential loop each run in a new ``python`` (not a fork) so the measured
process holds only what the run needs, as a device process would, and its peak RSS is its own.
A child runs only a function named in :data:`CHILD_RUNS`: the name on its command line is looked
up there, never in a module's globals.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import EdgesightError
from ..machine import peak_rss_mb
from .pipeline_run import pipeline_run
from .sequential import sequential_loop

ChildRun = Callable[..., dict[str, Any]]

# name on the child's command line -> the function it runs; JSON keyword arguments in, JSON dict out
CHILD_RUNS: dict[str, ChildRun] = {
    "sequential_loop": sequential_loop,
    "pipeline_run": pipeline_run,
}

# A child run that takes longer than this is hung, not slow (a Pi Zero 2 runs V2 at ~3 fps).
CHILD_TIMEOUT_S = 120
CHILD_TIMEOUT_PER_FRAME_S = 2.0
CHILD_CODE = "import sys; from edgesight.device.bench.children import child_entry; sys.exit(child_entry())"


def child_entry(argv: list[str] | None = None) -> int:
    """Entry of a child run: ``argv = [name, kwargs-json, result-path]``; the result is JSON."""
    name, kwargs_json, result_file = (sys.argv[1:] if argv is None else argv)[:3]
    result_path = Path(result_file)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    function = CHILD_RUNS.get(name)
    if function is None:
        result: dict[str, Any] = {"error": f"{name!r} is not a bench child run (known: {', '.join(CHILD_RUNS)})"}
    else:
        try:
            result = function(**json.loads(kwargs_json))
        except EdgesightError as exc:
            result = {"error": str(exc), "error_type": type(exc).__name__}
        else:
            result["peak_rss_mb"] = peak_rss_mb()
    result_path.write_text(json.dumps(result), encoding="utf-8")
    return 0


def registered_name(function: ChildRun) -> str:
    """The registry name of ``function``; a function not in :data:`CHILD_RUNS` is a programming error."""
    for name, known in CHILD_RUNS.items():
        if known is function:
            return name
    raise ValueError(f"{getattr(function, '__name__', function)!r} is not registered in CHILD_RUNS")


def run_in_child(function: ChildRun, **kwargs: Any) -> dict[str, Any]:
    """Run ``function(**kwargs)`` in a fresh interpreter; add that process's peak RSS.

    The result comes back as JSON through a file, not stdout, so nothing a library prints can
    corrupt it; a child's EdgesightError comes back as one here, with its message.
    """
    name = registered_name(function)
    with tempfile.TemporaryDirectory(prefix="edgesight-bench-") as tmp:
        result_path = Path(tmp) / "result.json"
        timeout = CHILD_TIMEOUT_S + CHILD_TIMEOUT_PER_FRAME_S * int(kwargs.get("frames", 0))
        try:
            proc = subprocess.run(
                [sys.executable, "-c", CHILD_CODE, name, json.dumps(kwargs), str(result_path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise EdgesightError(f"{name} run did not finish within {timeout:.0f} s (stopped)") from None
        if proc.returncode != 0 or not result_path.exists():
            lines = proc.stderr.strip().splitlines()
            raise EdgesightError(
                f"{name} run failed in its child process ({lines[-1] if lines else f'exit code {proc.returncode}'})"
            )
        result = json.loads(result_path.read_text(encoding="utf-8"))
    if "error" in result:
        raise EdgesightError(result["error"])
    return result
