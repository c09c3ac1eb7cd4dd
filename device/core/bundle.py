"""The model bundle: the directory the trainer writes and the device trusts.

A bundle is ``manifest.json`` + ``model.tflite`` + ``labels.txt`` (+ optional variants). The
device verifies every file's sha256 before loading, because a half-copied model on an SD card
gives confident nonsense rather than an error. See ``models/README.md`` for the format.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import BundleError
from .preprocess import InputContract, normalise_fit

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BundleFile:
    """One named file of the bundle format: what it holds and which runtime reads it (if any)."""

    name: str
    holds: str
    runtime: str | None = None


# The one table of bundle file names; the trainer writes them, the runtimes read them.
MANIFEST = "manifest.json"
LABELS = "labels.txt"
DEFAULT_MODEL = "model.tflite"
EDGETPU_MODEL = "model_edgetpu.tflite"
ONNX_MODEL = "model.onnx"
REPORT = "report.html"
SIGNATURE = "manifest.sig"
BUNDLE_FILES = (
    BundleFile(MANIFEST, "what the device needs to run the bundle and what it measured"),
    BundleFile(LABELS, "one label a line, in output order"),
    BundleFile(DEFAULT_MODEL, "the default model (full-integer int8 unless asked otherwise)", "litert"),
    BundleFile("model_fp16.tflite", "float16-weight variant", "litert"),
    BundleFile("model_float.tflite", "float32 variant", "litert"),
    BundleFile(EDGETPU_MODEL, "the int8 model compiled for a Coral Edge TPU", "edgetpu"),
    BundleFile(ONNX_MODEL, "ONNX export (ONNX Runtime; TensorRT builds its engines from it)", "onnx"),
    BundleFile(REPORT, "the evaluation report"),
    BundleFile(SIGNATURE, "Ed25519 signature over manifest.json"),
)
# Bare model files the device runtimes load (LiteRT/Edge TPU, ONNX Runtime, TensorRT engines).
MODEL_SUFFIXES = (".tflite", ".onnx", ".engine", ".plan")


def variant_file(quant: str) -> str:
    """The file name of a quantized variant other than the default (``model_fp16.tflite``)."""
    return f"model_{quant}.tflite"


REQUIRED_KEYS = (
    "schema_version",
    "name",
    "version",
    "created",
    "architecture",
    "input",
    "output",
    "files",
    "default_model",
    "metrics",
)
REQUIRED_INPUT_KEYS = ("size", "color", "fit", "mean", "std")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so a large model does not need to fit twice in RAM."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_labels(path: Path) -> list[str]:
    """One label a line; blank trailing lines ignored; ``N label`` / ``N: label`` index prefixes stripped."""
    if not path.exists():
        raise BundleError(f"{path}: no such labels file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise BundleError(f"{path}: labels file is not UTF-8 text") from None
    while lines and not lines[-1].strip():
        lines.pop()
    labels = []
    for number, line in enumerate(lines):
        text = line.strip()
        head, _, rest = text.partition(" ")
        if rest and head.rstrip(":").isdigit() and int(head.rstrip(":")) == number:
            text = rest.strip()
        labels.append(text)
    if not labels:
        raise BundleError(f"{path}: labels file is empty")
    return labels


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to run one model: file, labels, input contract and provenance."""

    model_path: Path
    labels: tuple[str, ...]
    contract: InputContract | None  # None: read it from the model itself (bare .tflite)
    background_index: int | None = None
    name: str = ""
    version: str = ""
    bundle_dir: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    def variant(self, filename: str) -> Path:
        """Path of another model file of the same bundle (e.g. ``model_fp16.tflite``)."""
        if self.bundle_dir is None:
            raise BundleError(f"{self.model_path}: a bare model has no variant {filename!r}")
        files = self.manifest.get("files", {})
        if filename not in files:
            raise BundleError(
                f"{self.bundle_dir / MANIFEST}: bundle has no file {filename!r} (it has {', '.join(sorted(files))})"
            )
        return self.bundle_dir / filename


def _contract_from_manifest(section: dict[str, Any], where: Path) -> InputContract:
    try:
        height, width = (int(v) for v in section["size"])
        if section["color"] != "RGB":
            raise BundleError(f"{where}: input.color must be RGB, not {section['color']!r}")
        return InputContract(
            height=height,
            width=width,
            dtype=str(section.get("dtype", "uint8")),
            scale=float(section.get("scale", 0.0)),
            zero_point=int(section.get("zero_point", 0)),
            mean=float(section["mean"]),
            std=float(section["std"]),
            fit=normalise_fit(section["fit"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{where}: bad input section ({exc})") from None


def read_manifest(bundle_dir: Path) -> dict[str, Any]:
    """Parse and shape-check ``manifest.json``; refuse a missing key or another schema version."""
    path = bundle_dir / MANIFEST
    if not path.exists():
        raise BundleError(f"{path}: missing; a bundle directory needs {MANIFEST}, {DEFAULT_MODEL} and {LABELS}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: expected a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise BundleError(f"{path}: missing key(s) {', '.join(missing)}")
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise BundleError(
            f"{path}: schema_version {manifest['schema_version']!r} is not supported "
            f"(this edgesight reads version {SCHEMA_VERSION})"
        )
    missing = [key for key in REQUIRED_INPUT_KEYS if key not in manifest["input"]]
    if missing:
        raise BundleError(f"{path}: missing key(s) input.{', input.'.join(missing)}")
    if not isinstance(manifest["files"], dict) or not manifest["files"]:
        raise BundleError(f"{path}: 'files' must map file names to their sha256")
    return manifest


def verify_bundle(bundle_dir: Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check every listed file exists and matches its sha256; return the manifest."""
    manifest = manifest or read_manifest(bundle_dir)
    for filename, entry in manifest["files"].items():
        path = bundle_dir / filename
        expected = entry.get("sha256") if isinstance(entry, dict) else entry
        if not path.exists():
            raise BundleError(f"{path}: listed in {MANIFEST} but missing")
        if sha256_file(path) != expected:
            raise BundleError(f"{path}: sha256 does not match {MANIFEST} (file changed or copied incompletely)")
    for needed in (manifest["default_model"], LABELS):
        if needed not in manifest["files"]:
            raise BundleError(f"{bundle_dir / MANIFEST}: 'files' does not list {needed}")
    return manifest


def load_bundle(bundle_dir: str | Path, model_file: str | None = None) -> ModelSpec:
    """Read and verify a bundle directory; ``model_file`` picks a variant instead of the default."""
    bundle_dir = Path(bundle_dir)
    manifest = verify_bundle(bundle_dir)
    labels = read_labels(bundle_dir / LABELS)
    output = manifest["output"]
    num_classes = output.get("num_classes")
    if num_classes is not None and num_classes != len(labels):
        raise BundleError(
            f"{bundle_dir / LABELS}: {len(labels)} labels but {MANIFEST} says output.num_classes is {num_classes}"
        )
    filename = model_file or manifest["default_model"]
    if filename not in manifest["files"]:
        raise BundleError(f"{bundle_dir / MANIFEST}: bundle has no model {filename!r}")
    contract = _contract_from_manifest(manifest["input"], bundle_dir / MANIFEST)
    return ModelSpec(
        model_path=bundle_dir / filename,
        labels=tuple(labels),
        contract=contract,
        background_index=output.get("background_index"),
        name=str(manifest["name"]),
        version=str(manifest["version"]),
        bundle_dir=bundle_dir,
        manifest=manifest,
    )


def resolve_model(path: str | Path, labels: str | Path | None = None, model_file: str | None = None) -> ModelSpec:
    """A bundle directory, or a bare ``.tflite`` with ``labels`` (or a ``labels.txt`` beside it).

    A bare model's input contract is read from the model itself when it is loaded.
    """
    path = Path(path)
    if path.is_dir():
        spec = load_bundle(path, model_file)
        if labels is not None:
            spec = ModelSpec(
                spec.model_path,
                tuple(read_labels(Path(labels))),
                spec.contract,
                spec.background_index,
                spec.name,
                spec.version,
                spec.bundle_dir,
                spec.manifest,
            )
        return spec
    if not path.exists():
        raise BundleError(f"{path}: no such model file or bundle directory")
    if path.suffix not in MODEL_SUFFIXES:
        raise BundleError(f"{path}: expected a bundle directory or a {', '.join(MODEL_SUFFIXES)} model file")
    labels_path = Path(labels) if labels is not None else path.with_name(LABELS)
    label_list = tuple(read_labels(labels_path)) if labels_path.exists() or labels is not None else ()
    background = 0 if label_list and label_list[0].strip().lower() in ("background", "???") else None
    return ModelSpec(
        model_path=path, labels=label_list, contract=None, background_index=background, name=path.stem, version=""
    )


def write_bundle(
    out_dir: str | Path,
    models: dict[str, Path],
    labels: list[str],
    *,
    name: str,
    version: str,
    architecture: dict[str, Any],
    contract: InputContract,
    background_index: int | None = None,
    metrics: dict[str, Any] | None = None,
    extra_files: dict[str, Path] | None = None,
    extra: dict[str, Any] | None = None,
    default_model: str = DEFAULT_MODEL,
) -> Path:
    """Write a bundle: copy model files in, write labels, hash everything, then the manifest last.

    The manifest is written last (and atomically) so a bundle interrupted mid-copy never looks
    complete. Existing files in ``out_dir`` that are not part of the bundle are left alone.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for filename, source in {**models, **(extra_files or {})}.items():
        target = out / filename
        if Path(source).resolve() != target.resolve():
            shutil.copyfile(source, target)
    (out / LABELS).write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
    for filename in [*models, LABELS, *(extra_files or {})]:
        target = out / filename
        files[filename] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "architecture": architecture,
        "input": {
            "size": [contract.height, contract.width],
            "color": "RGB",
            "fit": contract.fit,
            "mean": contract.mean,
            "std": contract.std,
            "dtype": contract.dtype,
            "scale": contract.scale,
            "zero_point": contract.zero_point,
        },
        "output": {"num_classes": len(labels), "background_index": background_index},
        "files": files,
        "default_model": default_model,
        "metrics": metrics or {},
        **(extra or {}),
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / MANIFEST)
    log.info("wrote bundle %s (%s)", out, ", ".join(files))
    return out
