"""Facts about the board this process runs on: usable cores, SoC temperature, memory, identity.

One copy of each, so the daemon's ``stats``, the pipeline's worker plan and the benchmark
report give the same answer on the same board (they once disagreed on the temperature zone).
"""

from __future__ import annotations

import os
import platform
import resource
import socket
import sys
from pathlib import Path
from typing import Any

THERMAL_ROOT = Path("/sys/class/thermal")


def usable_cores() -> int:
    """CPUs this process may run on (taskset, cpusets, containers), never less than one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows, or a kernel that refuses the call
        return max(1, os.cpu_count() or 1)


def cpu_temperature_c(root: Path = THERMAL_ROOT) -> float | None:
    """The SoC temperature in °C where the kernel exposes it (Pi, Jetson); None on most VMs.

    The first zone whose type names the CPU or SoC wins; otherwise zone 0 (the Pi's only zone).
    A Pi past ~80 °C throttles, which shows as a long p99 tail and a falling fps.
    """
    zones = sorted(root.glob("thermal_zone*"), key=lambda z: int(z.name[12:] or 0) if z.name[12:].isdigit() else 0)

    def read(zone: Path) -> float | None:
        try:
            return round(int((zone / "temp").read_text().strip()) / 1000.0, 1)
        except (OSError, ValueError):
            return None

    for zone in zones:
        try:
            kind = (zone / "type").read_text().strip().lower()
        except OSError:
            continue
        if "cpu" in kind or "soc" in kind:
            value = read(zone)
            if value is not None:
                return value
    for zone in zones:
        if zone.name == "thermal_zone0":
            return read(zone)
    return None


def memory_rss_mb() -> float | None:
    """Resident memory of this process now: /proc where there is one, else psutil, else None.

    /proc first because ``stats`` asks every interval and importing psutil for one number costs
    the daemon ~2 MB of RSS and tens of ms on a Pi; psutil only covers macOS and the like.
    """
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def memory_total_mb() -> int | None:
    """The machine's physical memory in MiB: /proc/meminfo, else psutil, else None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "MemTotal":
                return round(int(value.split()[0]) / 2**10)  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:  # psutil is in [device]; the report just lacks the figure without it
        return None
    return round(psutil.virtual_memory().total / 2**20)


def peak_rss_mb() -> float:
    """This process's peak resident set size since it started its program.

    Linux's ``VmHWM`` first: ``getrusage``'s ``ru_maxrss`` keeps, across ``exec``, the high-water
    mark of the process that forked it, so a child started by a 1.7 GB parent (pytest with
    TensorFlow, the benchmark) would report the parent's size, not its own. ``ru_maxrss``
    elsewhere (Linux reports KiB, macOS bytes).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def load_average() -> float | None:
    """The one-minute load average, or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def cpu_model() -> str:
    """The CPU's marketing name, or the Pi's ``Model``/``Hardware`` line."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return (
        fields.get("model name") or fields.get("Model") or fields.get("Hardware") or platform.processor() or "unknown"
    )


def board_model() -> str | None:
    """The device-tree model (``Raspberry Pi 4 Model B Rev 1.4``, a Jetson's name), if any."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            return Path(path).read_text(errors="replace").strip("\x00\n ")
        except OSError:
            continue
    return None


def machine_info() -> dict[str, Any]:
    """Host, CPU model, cores, memory, OS and board for a benchmark report."""
    import cv2
    import numpy as np

    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cores": usable_cores(),
        "cpu_count": os.cpu_count(),
        "arch": platform.machine(),
        "board": board_model(),
        "memory_mb": memory_total_mb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "load_1m": load_average(),
    }
