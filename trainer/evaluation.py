"""The result of running a bundle's models on a dataset split: the one type evaluate and report share.

It lives on its own low floor so ``evaluate`` (which computes it) and ``report`` (which draws
it) both import it and neither imports the other's module back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Evaluation:
    """Scores of every model file on one split, and the derived figures."""

    labels: tuple[str, ...]
    paths: list[Path]
    targets: np.ndarray
    scores: dict[str, np.ndarray]  # model file -> [N, classes]
    default_model: str
    metrics: dict[str, Any] = field(default_factory=dict)
    per_class: list[dict[str, Any]] = field(default_factory=list)
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))  # rows true, cols predicted
