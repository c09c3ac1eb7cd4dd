"""The JSON report of ``edgesight bench``: its header, per-model fields, ratios, and the load check.

The JSON is the source of truth; :mod:`.tables` only formats it. The machine's state is read at
the start and at the end of the run (temperature, one-minute load average) so a figure measured
on a hot or busy board says so in the file that carries it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import __version__
from ..machine import cpu_temperature_c, load_average, machine_info, usable_cores
from .settings import Settings, Target

if TYPE_CHECKING:  # the tables (and compare_bench.py) import this module without loading a runtime
    from ..classify import Classifier

log = logging.getLogger(__name__)

SCHEMA = "edgesight.bench/1"


@dataclass(frozen=True)
class MachineState:
    """What changes during a run and bends its figures: SoC temperature and the load average."""

    cpu_temp_c: float | None
    load_1m: float | None
    cores: int

    @classmethod
    def now(cls) -> MachineState:
        return cls(cpu_temperature_c(), load_average(), usable_cores())


def busy_warning(load_1m: float | None, cores: int, end_load_1m: float | None = None) -> str | None:
    """One sentence when other work held the CPU as the run began (load above the usable cores).

    Only the start counts: by the end the bench's own threads (a worker per core, the capture
    thread, the decoder's threads) are in the load average themselves.
    """
    if load_1m is None or load_1m <= cores:
        return None
    end = f", {end_load_1m:.1f} at the end" if end_load_1m is not None else ""
    return (
        f"the machine was busy: load average {load_1m:.1f} on {cores} usable core(s) at the start{end}; "
        f"other work competes for the CPU, so fps figures (and pipeline vs sequential) are lower than on a "
        f"quiet machine; close other work and measure again"
    )


def report_warning(report: dict[str, Any]) -> str | None:
    """:func:`busy_warning` for a finished report (a report written before load_1m was a dict has none)."""
    machine = report.get("machine") or {}
    load = machine.get("load_1m")
    if not isinstance(load, dict):
        return None
    return busy_warning(load.get("start"), int(machine.get("cores") or 1), load.get("end"))


def warn_if_busy(state: MachineState) -> None:
    """Log the busy-machine warning at the start, before minutes of measuring."""
    warning = busy_warning(state.load_1m, state.cores)
    if warning:
        log.warning("%s", warning)


def target_dict(target: Target) -> dict[str, Any]:
    return asdict(target)


def describe_model(classifier: Classifier) -> dict[str, Any]:
    """Name, version, file, size, input tensor and runtime of a model row."""
    spec, runtime = classifier.spec, classifier.runtime
    return {
        "name": spec.name or spec.model_path.stem,
        "version": spec.version or None,
        "path": str(spec.model_path),
        "bundle": str(spec.bundle_dir) if spec.bundle_dir else None,
        "bytes": spec.model_path.stat().st_size,
        "input": {"shape": list(runtime.input.shape), "dtype": runtime.input.dtype, "fit": classifier.contract.fit},
        "runtime": {"name": runtime.name, "version": runtime.version},
    }


def add_ratios(row: dict[str, Any]) -> None:
    """Pipeline fps over the CPU-bound limit and over the sequential loop, when both were measured."""
    pipeline = row.get("pipeline") or {}
    fps = pipeline.get("fps")
    if not fps:
        return
    if row.get("limit"):
        pipeline["ratio_to_limit"] = round(fps / row["limit"]["fps"], 3)
    if (row.get("sequential") or {}).get("fps"):
        pipeline["ratio_to_sequential"] = round(fps / row["sequential"]["fps"], 3)


def assemble(
    rows: list[dict[str, Any]], settings: Settings, source: dict[str, Any], start: MachineState
) -> dict[str, Any]:
    """The whole report (the JSON written by ``--json``); the machine's end state is read now."""
    end = MachineState.now()
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgesight": __version__,
        "machine": {
            **machine_info(),
            "cpu_temp_c": {"start": start.cpu_temp_c, "end": end.cpu_temp_c},
            "load_1m": {"start": start.load_1m, "end": end.load_1m},
        },
        "settings": {
            "threads": settings.threads,
            "runs": settings.runs,
            "warmup": settings.warmup,
            "frames": settings.frames,
            "mqtt": settings.mqtt,
            "cold_runs": settings.cold_runs,
            "skip": sorted(settings.skip),
        },
        "source": source,
        "models": rows,
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
