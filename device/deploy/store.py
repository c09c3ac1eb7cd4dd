"""The on-device bundle store: received bundles under ``[deploy] dir`` and the ``active`` record.

Layout: ``<dir>/<name>-<version>-<sha12>/`` per bundle, ``<dir>/active.json`` naming the one
that runs and the one before it, ``<dir>/.incoming/`` for transfers in progress. ``active.json``
is written to a temporary file and moved over the old one (``os.replace``), so a device killed at
any moment reads either the old record or the new one, never half of one. A record written
during the watch after a switch has ``confirmed: false``: a device that dies then boots the
previous bundle, the last one known good.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..core.errors import BundleError

log = logging.getLogger(__name__)

ACTIVE = "active.json"
INCOMING = ".incoming"


@dataclass(frozen=True)
class Entry:
    """One bundle in the store."""

    path: str
    name: str = ""
    version: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class Record:
    """What ``active.json`` holds."""

    active: Entry
    previous: Entry | None = None
    confirmed: bool = True

    def boot(self) -> Entry | None:
        """The bundle a restart should load: the active one if confirmed, else the previous one."""
        return self.active if self.confirmed else self.previous


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:60] or "bundle"


class Store:
    """Bundles under one folder; ``keep`` of them stay, never the active or previous one removed."""

    def __init__(self, root: str | Path, keep: int = 3) -> None:
        self.root = Path(root)
        self.keep = max(2, keep)

    def incoming(self) -> Path:
        path = self.root / INCOMING
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def read(self) -> Record | None:
        path = self.root / ACTIVE
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            prev = body.get("previous")
            return Record(Entry(**body["active"]), Entry(**prev) if prev else None, bool(body.get("confirmed", True)))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("deploy: %s unreadable (%s); booting the configured model", path, exc)
            return None

    def write(self, record: Record) -> None:
        """Atomically replace ``active.json`` (temp file, fsync, rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / (ACTIVE + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(asdict(record), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.root / ACTIVE)

    def place(self, extracted: Path, name: str, version: str, sha256: str) -> Entry:
        """Move an extracted, verified bundle into the store; return its entry."""
        target = self.root / f"{_safe_name(name)}-{_safe_name(version)}-{sha256[:12]}"
        if target.exists():
            shutil.rmtree(target)
        os.replace(extracted, target)
        return Entry(str(target), name, version, sha256)

    def prune(self) -> list[Path]:
        """Delete the oldest bundles beyond ``keep``; the active and previous ones stay."""
        record = self.read()
        protected = {Path(e.path).resolve() for e in ((record.active, record.previous) if record else ()) if e}
        bundles = sorted(
            (p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        removed = []
        for path in bundles[self.keep :]:
            if path.resolve() not in protected:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed


def extract(tar_path: Path, into: Path, max_bytes: int) -> Path:
    """Unpack a received tar safely: regular files only, no absolute or ``..`` names, size-capped.

    Raises BundleError naming the first offending member; nothing is left behind then.
    """
    into.mkdir(parents=True, exist_ok=False, mode=0o700)
    total = 0
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            for member in tar:
                name = member.name
                parts = Path(name).parts
                if not member.isfile():
                    raise BundleError(f"bundle member {name[:100]!r} is not a regular file (links and devices refused)")
                if name.startswith(("/", "\\")) or ".." in parts or not parts or any(":" in p for p in parts[:1]):
                    raise BundleError(f"bundle member {name[:100]!r} has an unsafe path")
                total += member.size
                if total > max_bytes:
                    raise BundleError(f"bundle unpacks to more than {max_bytes / 1e6:g} MB")
                target = into.joinpath(*parts)
                if not target.resolve().is_relative_to(into.resolve()):
                    raise BundleError(f"bundle member {name[:100]!r} leads outside the bundle")
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
    except tarfile.TarError as exc:
        shutil.rmtree(into, ignore_errors=True)
        raise BundleError(f"bundle is not a valid tar ({exc})") from None
    except BaseException:
        shutil.rmtree(into, ignore_errors=True)
        raise
    return into


def entry_dict(entry: Entry | None) -> dict[str, Any] | None:
    return asdict(entry) if entry else None
