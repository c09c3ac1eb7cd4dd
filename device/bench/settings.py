"""What one ``edgesight bench`` run measures: the targets, how much, and what to leave out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..machine import usable_cores

# the measurement names --skip accepts, in the order they run
STAGES = ("invoke", "preprocess", "limit", "sequential", "pipeline", "mqtt", "cold_start")


def default_thread_counts() -> list[int]:
    """1, 2, 4 ... up to the usable cores, and the core count itself (e.g. 1,2,3 on 3 cores)."""
    cores = usable_cores()
    counts = [n for n in (1, 2, 4, 8) if n <= cores]
    return counts if cores in counts else counts + [cores]


@dataclass(frozen=True)
class Target:
    """One row of the benchmark: a model or bundle on one runtime."""

    model: str
    labels: str | None = None
    runtime: str = "litert"
    model_file: str | None = None
    fit: str | None = None


@dataclass
class Settings:
    """How much to measure; defaults give stable figures in about half a minute per model."""

    threads: list[int] = field(default_factory=default_thread_counts)
    runs: int = 200
    warmup: int = 20
    frames: int = 300
    mqtt: bool = False
    cold_runs: int = 3
    cold_image: Path | None = None
    skip: frozenset[str] = frozenset()

    def steps_per_target(self) -> int:
        """Progress steps one target reports: one per thread count and one per later measurement."""
        return len(self.threads) + 6
