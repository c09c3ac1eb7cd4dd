"""The deploy wire format: offer, chunks and progress messages, shared by sender and receiver.

A transfer is one offer on ``<prefix>/deploy/offer`` (QoS 1, never retained) followed by
``chunks`` messages on ``<prefix>/deploy/in/<transfer>/<n>`` (QoS 1). Each chunk is 64 ASCII hex
digits of its own sha256, then its bytes, so a corrupt chunk is caught before it is written; the
whole tar is checked against the offer's sha256 at the end. An offer with a ``url`` has no chunks:
the device pulls the tar from there (:mod:`.pull`) and checks it the same way.

Resuming: a device answers a repeated offer of the transfer it is receiving (and republishes
after each reconnect) with a ``receiving`` progress whose ``missing`` lists the chunk numbers it
still needs (at most :data:`MAX_MISSING`); the sender resends exactly those. Progress comes back retained on
``<prefix>/deploy`` (:func:`progress`), one JSON message per step.

The tar is deterministic (:func:`pack`): the same bundle gives the same bytes, so its sha256
identifies the bundle and a re-deploy of what already runs can be recognised without sending it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..core.errors import BundleError

VERSION = 1
CHUNK_BYTES = 256 * 1024
HASH_LEN = 64
STATES = ("receiving", "verifying", "shadow", "active", "refused", "rolled_back")
FINAL = ("active", "refused", "rolled_back")
PULL_SCHEMES = ("http://", "https://", "file://")
MAX_MISSING = 1000  # chunk numbers listed in one progress message; the rest follow in the next round
_TRANSFER = re.compile(r"^[0-9a-f]{8,32}$")


@dataclass(frozen=True)
class Offer:
    """What the sender announces before the chunks."""

    transfer: str
    name: str
    version: str
    sha256: str
    size: int
    chunk_size: int
    chunks: int
    url: str = ""  # set: the device pulls the tar from here instead of waiting for chunks
    v: int = VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, payload: bytes, max_size: int) -> Offer:
        """The offer in ``payload``; ValueError (one line) when it is malformed or too big."""
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ValueError("offer is not JSON") from None
        if not isinstance(body, dict):
            raise ValueError("offer is not a JSON object")
        try:
            offer = cls(
                transfer=str(body["transfer"]),
                name=str(body["name"])[:100],
                version=str(body["version"])[:50],
                sha256=str(body["sha256"]).lower(),
                size=int(body["size"]),
                chunk_size=int(body["chunk_size"]),
                chunks=int(body["chunks"]),
                url=str(body.get("url") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"offer lacks or mangles a field ({exc})") from None
        if not _TRANSFER.match(offer.transfer):
            raise ValueError("offer transfer id must be 8-32 lower-case hex digits")
        if not re.fullmatch(r"[0-9a-f]{64}", offer.sha256):
            raise ValueError("offer sha256 is not 64 hex digits")
        if offer.size > max_size:
            raise ValueError(
                f"bundle of {offer.size / 1e6:.1f} MB is over [deploy] max_bundle_mb ({max_size / 1e6:g} MB)"
            )
        if offer.size <= 0 or not 1024 <= offer.chunk_size <= 16 * 1024 * 1024:
            raise ValueError("offer size or chunk_size out of range")
        if offer.url and (len(offer.url) > 2000 or not offer.url.startswith(PULL_SCHEMES)):
            raise ValueError("offer url must be http://, https:// or file:// (at most 2000 characters)")
        if offer.chunks != -(-offer.size // offer.chunk_size):
            raise ValueError("offer chunk count does not match size / chunk_size")
        return offer


def chunk_payload(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode("ascii") + data


def open_chunk(payload: bytes) -> bytes:
    """The bytes of one chunk; ValueError when its hash does not match."""
    digest, data = payload[:HASH_LEN], payload[HASH_LEN:]
    if hashlib.sha256(data).hexdigest().encode("ascii") != digest.lower():
        raise ValueError("sha256 does not match its bytes")
    return data


def pack(bundle_dir: str | Path) -> bytes:
    """The bundle's regular files as a deterministic, uncompressed tar (sorted, no owners, mtime 0)."""
    root = Path(bundle_dir)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            rel = path.relative_to(root).as_posix()
            info = tarfile.TarInfo(rel)
            info.size = path.stat().st_size
            info.mode, info.mtime, info.uid, info.gid = 0o644, 0, 0, 0
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()


def progress(offer: Offer | None, state: str, reason: str = "", **measured: Any) -> dict[str, Any]:
    """One retained ``<prefix>/deploy`` message."""
    assert state in STATES, state
    body: dict[str, Any] = {
        "v": VERSION,
        "state": state,
        "bundle": offer.name if offer else "",
        "version": offer.version if offer else "",
        "sha256": offer.sha256 if offer else "",
        "transfer": offer.transfer if offer else "",
        "reason": reason,
        "timestamp": round(time.time(), 3),
    }
    body.update({k: v for k, v in measured.items() if v is not None})
    return body
