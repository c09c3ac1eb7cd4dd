"""Self-test probes: a few images stored in the bundle with the answer its model gave at export.

A device reproduces them on its own runtime before a new bundle may take over: same top-1 index
exactly, score within a tolerance. That catches what hashes cannot: a runtime or delegate that
computes something else, labels in another order, the wrong preprocessing.

``probes/probes.json`` (listed with its sha256 in the manifest's files table, so the signature
covers it) holds each probe's file name and sha256, and the expected top-1 ``index``, ``label``
and ``score``. Probe images are PNG copies (lossless, so every decoder sees the same pixels),
scaled down so the shorter side is the model's input size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .classify import Classifier
from .core.bundle import MANIFEST, SIGNATURE, read_manifest, sha256_file
from .core.errors import BundleError, EdgesightError
from .core.preprocess import read_image
from .core.signing import PROBES_JSON

PROBES_DIR = "probes"
DEFAULT_MAX_PROBES = 8
# A probe whose top-1 leads the runner-up by less than this is skipped: another runtime's rounding
# could flip it, and a self-test must fail only when the model really behaves differently.
MIN_MARGIN = 0.05
PROBES_FORMAT = 1


@dataclass
class SelfTestResult:
    """Outcome of :func:`run_self_test`; ``reason`` is one line fit for a deploy state message."""

    passed: bool
    checked: int
    failures: list[str] = field(default_factory=list)
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _small_copy(frame: np.ndarray, side: int) -> np.ndarray:
    """Scale down (never up) so the shorter side is ``side``: small, and still fits as the original."""
    height, width = frame.shape[:2]
    factor = side / min(height, width)
    if factor >= 1:
        return frame
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def write_probes(
    bundle_dir: str | Path,
    images: Sequence[str | Path | np.ndarray],
    classifier: Classifier | None = None,
    *,
    max_probes: int = DEFAULT_MAX_PROBES,
) -> list[dict[str, Any]]:
    """Store up to ``max_probes`` probes in ``BUNDLE/probes/`` and list probes.json in the manifest.

    ``images`` are paths or BGR uint8 arrays. ``classifier`` defaults to the bundle's default
    model on LiteRT (the device runtime). Images the model is unsure about (top-1 within
    :data:`MIN_MARGIN` of the runner-up) are skipped. Call this after ``write_bundle`` and before signing:
    it rewrites manifest.json (atomically), so an existing signature is removed. Returns the
    probe entries written.
    """
    bundle_dir = Path(bundle_dir)
    if max_probes < 1:
        raise EdgesightError("the number of probes must be at least 1")
    if not images:
        raise EdgesightError("no probe images given")
    if classifier is None:
        classifier = Classifier.open(bundle_dir, runtime="litert")
    probes_dir = bundle_dir / PROBES_DIR
    probes_dir.mkdir(exist_ok=True)
    for old in probes_dir.glob("probe_*.png"):
        old.unlink()
    side = max(classifier.contract.height, classifier.contract.width)
    entries: list[dict[str, Any]] = []
    for image in images:
        if len(entries) == max_probes:
            break
        frame = read_image(image) if isinstance(image, (str, Path)) else image
        name = f"probe_{len(entries):02d}.png"
        ok, encoded = cv2.imencode(".png", _small_copy(frame, side), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise EdgesightError(f"{image if isinstance(image, (str, Path)) else name}: cannot encode as PNG")
        (probes_dir / name).write_bytes(encoded.tobytes())
        top = classifier.classify(read_image(probes_dir / name), k=2).top  # what the device will read
        best = top[0]
        if len(top) > 1 and best.score - top[1].score < MIN_MARGIN:
            (probes_dir / name).unlink()
            continue
        entries.append(
            {
                "file": name,
                "sha256": sha256_file(probes_dir / name),
                "source": Path(image).name if isinstance(image, (str, Path)) else None,
                "index": best.index,
                "label": best.label,
                "score": round(best.score, 6),
            }
        )
    if not entries:
        raise EdgesightError(
            f"no usable probe among {len(images)} image(s): the model's top-1 leads by less than {MIN_MARGIN} on each"
        )
    body = {
        "format": PROBES_FORMAT,
        "model": classifier.spec.model_path.name,
        "runtime": classifier.runtime.name,
        "probes": entries,
    }
    _write_atomic(bundle_dir / PROBES_JSON, json.dumps(body, indent=2) + "\n")
    _list_in_manifest(bundle_dir, PROBES_JSON)
    return entries


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _list_in_manifest(bundle_dir: Path, filename: str) -> None:
    """Add (or refresh) one file's sha256 in the manifest's files table; drop a now stale signature."""
    manifest = read_manifest(bundle_dir)
    target = bundle_dir / filename
    manifest["files"][filename] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}
    _write_atomic(bundle_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    (bundle_dir / SIGNATURE).unlink(missing_ok=True)


def read_probes(bundle_dir: str | Path) -> list[dict[str, Any]] | None:
    """The bundle's probes (None when it has none), after checking probes.json and each image's hash."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / PROBES_JSON
    manifest = read_manifest(bundle_dir)
    listed = manifest["files"].get(PROBES_JSON)
    if listed is None:
        if path.exists():
            raise BundleError(f"{path}: not listed in {MANIFEST}, so not covered by its hashes or signature")
        return None
    digest = listed.get("sha256") if isinstance(listed, dict) else listed
    if not path.is_file():
        raise BundleError(f"{path}: listed in {MANIFEST} but missing")
    if sha256_file(path) != digest:
        raise BundleError(f"{path}: sha256 does not match {MANIFEST} (file changed or copied incompletely)")
    try:
        probes = json.loads(path.read_text(encoding="utf-8"))["probes"]
        checked = [{**p, "file": str(p["file"]), "index": int(p["index"]), "score": float(p["score"])} for p in probes]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{path}: not a valid probes file ({exc})") from None
    for probe in checked:
        image = path.parent / probe["file"]
        if Path(probe["file"]).name != probe["file"] or not image.is_file():
            raise BundleError(f"{image}: listed in {PROBES_JSON} but missing")
        if sha256_file(image) != probe.get("sha256"):
            raise BundleError(f"{image}: sha256 does not match {PROBES_JSON}")
    return checked


def run_self_test(
    bundle_dir: str | Path,
    *,
    runtime: str = "auto",
    score_tolerance: float = 0.02,
    classifier: Classifier | None = None,
    require_probes: bool = False,
) -> SelfTestResult:
    """Classify every probe on this device; pass when each top-1 index matches and its score is within tolerance.

    Never raises for a bad bundle: a missing or tampered probe, or a model that will not load,
    is a failed result whose ``reason`` names the file. A bundle without probes passes with
    ``checked == 0`` unless ``require_probes``.
    """
    bundle_dir = Path(bundle_dir)
    try:
        probes = read_probes(bundle_dir)
        if probes is None:
            if require_probes:
                return SelfTestResult(False, 0, [], f"{bundle_dir}: bundle has no self-test probes ({PROBES_JSON})")
            return SelfTestResult(True, 0, [], "bundle has no self-test probes")
        if not probes:
            return SelfTestResult(not require_probes, 0, [], f"{bundle_dir / PROBES_JSON}: lists no probes")
        if classifier is None:
            classifier = Classifier.open(bundle_dir, runtime=runtime)
        failures = []
        for probe in probes:
            best = classifier.classify(read_image(bundle_dir / PROBES_DIR / probe["file"]), k=1).best
            if best.index != probe["index"]:
                failures.append(
                    f"{probe['file']}: top-1 is {best.index} {best.label!r} ({best.score:.3f}), "
                    f"expected {probe['index']} {probe.get('label')!r} ({probe['score']:.3f})"
                )
            elif abs(best.score - probe["score"]) > score_tolerance:
                failures.append(
                    f"{probe['file']}: score {best.score:.4f} for {best.label!r}, expected {probe['score']:.4f} "
                    f"(tolerance {score_tolerance})"
                )
    except EdgesightError as exc:
        return SelfTestResult(False, 0, [str(exc)], str(exc))
    on = f"{classifier.runtime.name} ({classifier.spec.model_path.name})"
    if failures:
        reason = f"self-test failed on {len(failures)} of {len(probes)} probes on {on}: {failures[0]}"
        return SelfTestResult(False, len(probes), failures, reason)
    return SelfTestResult(True, len(probes), [], f"{len(probes)} probes reproduced on {on}")
