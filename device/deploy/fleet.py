"""Who runs what: one row per device from the retained topics under a prefix root."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from .sender import Broker, Watcher


@dataclass(frozen=True)
class Row:
    device: str
    online: bool
    model: str
    version: str
    deploy: str
    fps: float | None
    drift: float | None
    last_seen: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rows(watcher: Watcher) -> list[Row]:
    out = []
    for device in sorted(set(watcher.availability) | set(watcher.deploy) | {d for d, _ in watcher.other}):
        stats = watcher.other.get((device, "stats"), {})
        model: dict[str, Any] = stats["model"] if isinstance(stats.get("model"), dict) else {}
        drift: dict[str, Any] = stats["drift"] if isinstance(stats.get("drift"), dict) else {}
        deploy = watcher.deploy.get(device, {})
        fps = stats.get("fps")
        score = drift.get("score")
        stamp = stats.get("timestamp")
        out.append(
            Row(
                device=device,
                online=watcher.availability.get(device) == "online",
                model=str(model.get("name", "") or deploy.get("bundle", "")),
                version=str(model.get("version", "") or ""),
                deploy=str(deploy.get("state", "")),
                fps=float(fps) if isinstance(fps, (int, float)) else None,
                drift=float(score) if isinstance(score, (int, float)) else None,
                last_seen=float(stamp) if isinstance(stamp, (int, float)) else watcher.seen.get(device),
            )
        )
    return out


def survey(broker: Broker, root: str = "edgesight", settle_s: float = 1.5) -> list[Row]:
    """Subscribe for ``settle_s`` seconds and return what the retained topics say."""
    watcher = Watcher(broker, root, extra=("stats", "state"))
    try:
        watcher.settle(settle_s)
        return rows(watcher)
    finally:
        watcher.close()


def table(found: list[Row], now: float | None = None) -> str:
    now = time.time() if now is None else now
    head = ("DEVICE", "ONLINE", "MODEL", "VERSION", "DEPLOY", "FPS", "DRIFT", "LAST SEEN")
    lines = [head]
    for r in found:
        seen = f"{max(0.0, now - r.last_seen):.0f} s ago" if r.last_seen else "-"
        lines.append(
            (
                r.device,
                "yes" if r.online else "no",
                r.model or "-",
                r.version or "-",
                r.deploy or "-",
                f"{r.fps:.1f}" if r.fps is not None else "-",
                f"{r.drift:.2f}" if r.drift is not None else "-",
                seen,
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines)
