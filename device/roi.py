"""``[source] roi``: the region of interest, checked in the config and resolved on the first frame.

The crop happens once per frame, in the capture stage before the change gate and the fit (a
numpy view, no copy), so the gate and the model see the same pixels. This module imports
nothing heavy: the config validates ROIs with it before OpenCV is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .core.errors import ConfigError

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


def check_roi(value: Any) -> tuple[float, ...]:
    """Validate ``[source] roi`` on its own (no frame yet); raise ValueError with the reason.

    Four integers are pixels; four numbers with a decimal point are fractions of the frame
    (0..1, the region inside it). Mixing them is refused: ``[0, 0, 0.5, 1]`` is ambiguous.
    """
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"expected [x, y, w, h] (4 numbers), got {_shown(value)}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ValueError(f"expected [x, y, w, h] (4 finite numbers), got {_shown(value)}")
    ints = [isinstance(v, int) for v in value]
    x, y, w, h = value
    if all(ints):
        if x < 0 or y < 0 or w < 1 or h < 1:
            raise ValueError(f"pixels need x, y >= 0 and w, h >= 1, got {_shown(value)}")
    elif not any(ints):
        if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1):
            raise ValueError(f"fractions need x, y in 0..1 and w, h in (0, 1], got {_shown(value)}")
        if x + w > 1 + 1e-9 or y + h > 1 + 1e-9:
            raise ValueError(f"fractions need x + w <= 1 and y + h <= 1, got {_shown(value)}")
    else:
        raise ValueError(
            f"write all 4 as integers (pixels) or all 4 with a decimal point (fractions), got {_shown(value)}"
        )
    return tuple(value)


def resolve_roi(roi: Sequence[float], width: int, height: int) -> Box:
    """The ROI in pixels of a ``width`` x ``height`` frame; ConfigError naming the key when it does not fit."""
    x, y, w, h = roi
    if all(isinstance(v, int) for v in roi):
        box = (int(x), int(y), int(w), int(h))
        if box[0] + box[2] > width or box[1] + box[3] > height:
            raise ConfigError(
                f"[source] roi: {list(box)} lies outside the {width}x{height} frame "
                f"(needs x + w <= {width} and y + h <= {height})"
            )
        return box
    x0, y0 = round(x * width), round(y * height)
    x1, y1 = min(width, round((x + w) * width)), min(height, round((y + h) * height))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ConfigError(f"[source] roi: {list(roi)} is less than a pixel of the {width}x{height} frame")
    return (x0, y0, x1 - x0, y1 - y0)


def crop(image: Any, box: Box) -> Any:
    """The region of ``image`` (a view: the fit that follows copies what it needs)."""
    x, y, w, h = box
    return image[y : y + h, x : x + w]


def _shown(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)
